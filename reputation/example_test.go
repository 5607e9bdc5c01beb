package reputation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/reputation"
)

func ExampleStore_Record() {
	store, err := reputation.NewStore(reputation.Config{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for range 10 {
		if _, err := store.Record(ctx, reputation.Event{AgentID: "coder", Type: reputation.TypeSuccess}); err != nil {
			panic(err)
		}
	}
	res, err := store.Record(ctx, reputation.Event{
		AgentID:    "coder",
		Type:       "hallucination",
		Severity:   "critical",
		TraceID:    "trace-42",
		Details:    json.RawMessage(`{"claim":"2+2=5"}`),
		DetectedBy: "fact-checker",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.PreviousScore, "→", res.Score, res.TrustLevel)
	// Output: 6.00 → 4.00 standard
}

func ExampleDelta() {
	for _, sev := range []string{"critical", "", "nonsense"} {
		d, normalized, _ := reputation.Delta("hallucination", sev)
		fmt.Printf("%q → %s (%s)\n", sev, d, normalized)
	}
	_, _, err := reputation.Delta("rudeness", "")
	fmt.Println(err)
	// Output:
	// "critical" → -2.00 (critical)
	// "" → -0.50 (medium)
	// "nonsense" → -1.00 (high)
	// reputation: unknown reason "rudeness": want one of hallucination, failure, timeout, error, success
}

func ExampleParsePoints() {
	p, _ := reputation.ParsePoints("5.9999999999999964") // ten successes in Python floats
	b, _ := json.Marshal(p)
	fmt.Println(p, string(b), reputation.Level(p))
	// Output: 6.00 6 trusted
}

func ExampleStore_Import() {
	store, _ := reputation.NewStore(reputation.Config{
		Clock: func() time.Time { return time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC) },
	})
	peerSnapshot := []byte(`{"reputation_data": {
		"spammer": {"agent_id": "spammer", "score": 1.5},
		"saint":   {"agent_id": "saint",   "score": 10.0}
	}, "timestamp": "2026-01-25T09:59:00"}`)
	n, err := store.Import(context.Background(), "peer-eu", peerSnapshot)
	if err != nil {
		panic(err)
	}
	spammer, _ := store.Score("spammer")
	_, saintKnown := store.Score("saint")
	fmt.Println(n, spammer, reputation.Level(spammer), saintKnown)
	// Output: 1 1.50 untrusted false
}

func ExampleNode() {
	dir, _ := os.MkdirTemp("", "example-node-")
	defer os.RemoveAll(dir)
	key, _ := identity.GenerateKey(nil)
	ctx := context.Background()
	node, err := reputation.Open(ctx, reputation.NodeConfig{Dir: dir, AgentID: "billing-agent", Key: key})
	if err != nil {
		panic(err)
	}
	defer node.Close(ctx)

	// A verifier's report, signed by this node and durable on return.
	res, err := node.RecordHallucination(ctx, "search-agent", "critical", "trace-42", json.RawMessage(`{"claim":"2+2=5"}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.PreviousScore, "→", res.Score, res.TrustLevel)

	// Calls this node's egress made: one summary per interval (Flush now).
	for range 10 {
		node.RecordSuccess("search-agent")
	}
	node.RecordFailure("search-agent", "timeout")
	_ = node.Flush(ctx)
	score, _ := node.Score("search-agent")
	fmt.Println(score, node.TrustLevel("search-agent"))

	// Its own agent's outcomes are counted, never scored.
	node.RecordSuccess("billing-agent")
	_, known := node.Score("billing-agent")
	fmt.Println(known)
	// Output:
	// 5.00 → 3.00 unknown
	// 3.50 unknown
	// false
}
