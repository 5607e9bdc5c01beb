package recorder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/iatp/iatp/recorder"
)

// Example shows the sidecar's use: open the log under the data directory,
// record a request before forwarding it and the answer after, answer
// /trace/{id}, and verify the log offline.
func Example() {
	dataDir, err := os.MkdirTemp("", "iatp-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dataDir)
	dir := filepath.Join(dataDir, "recorder")
	ctx := context.Background()

	l, err := recorder.Open(ctx, recorder.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	// Before forwarding: Append returns once the record is written.
	if _, err := l.Append(ctx, &recorder.Record{
		Kind: recorder.KindRequest, TraceID: "trace-42", AgentID: "booking-agent",
		CallerID: "travel-planner", Authenticated: true, Decision: "allow",
		Payload: json.RawMessage(`{"task":"book a flight","card":"[CREDIT_CARD_REDACTED]"}`),
	}); err != nil {
		log.Fatal(err) // fail closed: do not forward
	}
	// After the answer.
	if _, err := l.Append(ctx, &recorder.Record{
		Kind: recorder.KindResponse, TraceID: "trace-42", AgentID: "booking-agent",
		Status: 200, LatencyMs: 12.5, Payload: json.RawMessage(`{"booked":true}`),
	}); err != nil {
		log.Fatal(err)
	}
	recs, err := l.Trace(ctx, "trace-42", 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range recs {
		fmt.Println(r.Seq, r.Kind, r.Status)
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	rep, err := recorder.Verify(ctx, dir, recorder.VerifyOptions{})
	if err != nil {
		log.Fatal(err) // a *recorder.VerifyError names segment, seq and problem
	}
	fmt.Println("verified", rep.Records, "records from", rep.ChainStart)
	// Output:
	// 1 request 0
	// 2 response 200
	// verified 2 records from genesis
}
