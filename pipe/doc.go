// Package pipe connects agents that run in one process, or in two
// processes over a Unix domain socket, with typed pipes — A | policy | B —
// that check every message the way the sidecar checks a request.
//
// A Stage is an agent: a function from In to Out running under the
// agent's manifest. From, Then, FanOut and FanIn compose stages into a
// Pipe[In, Out], and they compose only when the types match, at compile
// time. Open starts a Pipe: each stage gets a bounded buffer and its
// workers; Send puts a value in; Results gives what comes out.
//
// Every value that passes from one agent to another is a message: the
// value the pipeline's owner sends to the first stage, each stage's output
// to the next, and the last stage's output to the owner. Each message has
// a random id, the trace id of the value it came from, its source and
// target agents, the runtime name of its type and its size, and is
// checked by pipeline.PipeChecks, run by pipeline.Pipeline.Serve on an
// Exchange of kind Message: its JSON encoding is parsed once, scanned by
// the detector and scrubbed; verifiers judge the source's output; the
// sidecar's policy engine decides for both ends (CEL rules see message);
// the message is recorded by the flight recorder before it is delivered
// into the target's buffer. A message refused anywhere goes no further,
// and its *Error names the check and the rule.
//
// Nothing fails open: a pipe without a policy engine does not open unless
// Config.WithoutPolicyUnsafe says so; a policy error, a verifier error, a
// recorder error, a full buffer past the send timeout or a cancelled
// context each stop the message. A stage whose output a verifier flags is
// reported to the reputation store like a remote agent, and a stage whose
// agent is untrusted is refused: at Open, and for every message once its
// reputation falls.
//
// Dial, Remote and Serve carry a pipe across two processes: messages are
// framed and signed as package frame describes, and the receiving side
// checks each of them again before its first stage sees it.
package pipe
