// Package cli implements the iatp command line: one file per subcommand, each
// building its own cobra.Command with local flags.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0 // success
	exitFail  = 1 // the check ran and failed, or the operation failed
	exitUsage = 2 // bad flags or arguments, missing files
)

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failf reports a failed check or operation (exit 1).
func failf(format string, args ...any) error {
	return &exitError{code: exitFail, err: fmt.Errorf(format, args...)}
}

// usagef reports a usage problem (exit 2).
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// silentFail exits 1 without printing anything more: the command already
// wrote its own report (for example a --json document).
var silentFail = &exitError{code: exitFail, err: errors.New("")}

// streams are the standard streams a command writes to.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// newRootCmd builds the whole command tree.
func newRootCmd(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "iatp",
		Short: "Inter-Agent Trust Protocol: a trust sidecar and control plane for AI agents",
		Long: `iatp puts a trust sidecar in front of an AI agent: it publishes the agent's
manifest, authenticates callers, decides, scrubs and records every request,
and forwards only what is allowed.

Start with "iatp demo" (the whole story on loopback), then
"iatp sidecar --agent-url URL --manifest FILE". The README and docs/ explain
the rest; "iatp completion bash|zsh|fish" prints a shell completion script.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("iatp {{.Version}} (" + runtime.Version() + ")\n")
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		newVersionCmd(s),
		newVerifyCmd(s),
		newScanCmd(s),
		newHandshakeCmd(s),
		newKeygenCmd(s), newAttestCmd(s), newManifestCmd(s),
		newAuditCmd(s),
		newReputationCmd(s),
		newSidecarCmd(s),
		newDemoCmd(s),
		newExperimentCmd(s),
	)
	root.InitDefaultCompletionCmd() // iatp completion bash|zsh|fish|powershell
	return root
}

// Main runs the command line with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := &streams{in: stdin, out: stdout, err: stderr}
	root := newRootCmd(s)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitUsage // errors from cobra itself (unknown command, bad arguments)
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	msg := err.Error()
	if msg == "" {
		return code // the command already reported it
	}
	fmt.Fprintf(stderr, "iatp: %s\n", msg)
	if wantsJSONErrors(cmd) {
		_ = json.NewEncoder(stdout).Encode(jsonError{Status: "fail", ExitStatus: code, Error: msg})
	}
	return code
}

// jsonError is what a command run with --json prints on stdout when it
// fails before it could print its own result, so that a script reading
// stdout always gets JSON.
type jsonError struct {
	Status     string `json:"status"` // always "fail"
	ExitStatus int    `json:"exit_status"`
	Error      string `json:"error"`
}

// annotationJSON, set to "log" in a command's annotations, says that its
// --json flag selects the log format (iatp sidecar), so errors are not
// repeated as JSON on stdout.
const annotationJSON = "iatp.json"

// wantsJSONErrors reports whether cmd ran with --json for its result.
func wantsJSONErrors(cmd *cobra.Command) bool {
	if cmd == nil || cmd.Annotations[annotationJSON] == "log" {
		return false
	}
	f := cmd.Flags().Lookup("json")
	return f != nil && f.Value.String() == "true"
}
