package cascade

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/iatp/iatp/internal/wire"
)

// message is the body of every call in the mesh. It names the request and
// its task; whether it is poisoned is kept in the plan, keyed by the
// request id, where no sidecar can see it.
type message struct {
	ID    string `json:"id"`
	Task  string `json:"task"`
	Input string `json:"input"`
}

// call is what a caller saw of one request.
type call struct {
	status    int
	blockedBy string
	took      time.Duration
	err       string
}

// action is one executor's handler run: the irreversible action done.
type action struct {
	ref      RequestRef
	poisoned bool
	at       time.Duration // since the arm's rounds started
}

// ledger is the arm's side table: what each agent saw and did, by request
// id.
type ledger struct {
	mu       sync.Mutex
	start    time.Time
	handled  map[string]time.Duration // request id → how long its agent's handler took
	calls    map[string]call          // request id → its caller's view
	actions  []action
	firstBad map[int]time.Time // bad agent → when it first sent a poisoned output
}

func newLedger() *ledger {
	return &ledger{handled: map[string]time.Duration{}, calls: map[string]call{}, firstBad: map[int]time.Time{}}
}

func (l *ledger) handle(id string, took time.Duration) {
	l.mu.Lock()
	l.handled[id] = took
	l.mu.Unlock()
}

func (l *ledger) delivered(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.handled[id]
	return ok
}

func (l *ledger) called(id string, c call) {
	l.mu.Lock()
	l.calls[id] = c
	l.mu.Unlock()
}

func (l *ledger) act(ref RequestRef, poisoned bool) {
	l.mu.Lock()
	l.actions = append(l.actions, action{ref: ref, poisoned: poisoned, at: time.Since(l.start)})
	l.mu.Unlock()
}

func (l *ledger) poisonSent(agent int, at time.Time) {
	l.mu.Lock()
	if _, ok := l.firstBad[agent]; !ok {
		l.firstBad[agent] = at
	}
	l.mu.Unlock()
}

func (l *ledger) poisonedActions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.actions {
		if a.poisoned {
			n++
		}
	}
	return n
}

// agentHandler is agent i: it reads its request, and either performs its
// action (an executor) or sends its output to the next agent of the chain
// and answers when that one has answered.
func (a *arm) agentHandler(i int) http.Handler {
	pl := a.r.plan
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		var msg message
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<16)).Decode(&msg); err != nil {
			http.Error(w, `{"error":"send a JSON message"}`, http.StatusBadRequest)
			return
		}
		ref, ok := pl.Lookup(msg.ID)
		if !ok || ref.Chain.Path[ref.Hop] != i {
			http.Error(w, `{"error":"not a request for this agent"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if ref.Hop == Hops {
			a.led.act(ref, pl.Poisoned(ref.Chain, Hops))
			a.led.handle(msg.ID, time.Since(start))
			_, _ = io.WriteString(w, `{"done":true}`)
			return
		}
		if pl.Hallucinated(ref.Chain, ref.Hop) {
			a.led.poisonSent(i, time.Now())
		}
		c := a.send(req.Context(), ref.Chain, ref.Hop+1)
		a.led.handle(msg.ID, time.Since(start))
		_ = json.NewEncoder(w).Encode(map[string]any{"done": true, "next_status": c.status})
	})
}

// send sends request h of chain c to Path[h]: from the user (h = 0) or
// from agent Path[h−1], through that agent's egress proxy in the sidecar
// arms.
func (a *arm) send(ctx context.Context, c *Chain, h int) call {
	pl := a.r.plan
	id := c.RequestID(h)
	body, _ := json.Marshal(message{ID: id, Task: pl.Task(c, h), Input: "output of " + c.RequestID(max(0, h-1))})
	to := a.mesh.nodes[c.Path[h]]
	client, target := a.mesh.user, to.agentURL+"/"
	if h > 0 {
		client = a.mesh.nodes[c.Path[h-1]].client
	}
	if to.ingressURL != "" {
		target = to.ingressURL + "/proxy"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return a.record(id, call{err: err.Error()})
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.TraceID, c.TraceID())
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return a.record(id, call{err: err.Error(), took: time.Since(start)})
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	cl := call{status: resp.StatusCode, took: time.Since(start)}
	if resp.StatusCode != http.StatusOK {
		var refusal struct {
			BlockedBy string `json:"blocked_by"`
			Error     string `json:"error"`
		}
		_ = json.Unmarshal(out, &refusal)
		cl.blockedBy, cl.err = refusal.BlockedBy, refusal.Error
	}
	return a.record(id, cl)
}

func (a *arm) record(id string, c call) call {
	a.led.called(id, c)
	return c
}
