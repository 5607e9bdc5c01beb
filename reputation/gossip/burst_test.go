package gossip

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/iatp/iatp/reputation"
)

// TestBurstOfReportsWithDetails: reports made one after the other, with
// trace ids and details (as a verifier sends them), all reach the peer.
func TestBurstOfReportsWithDetails(t *testing.T) {
	nodes := startMesh(t, 2, allOthers(2), nil)
	ctx := context.Background()
	for i := range 40 {
		subject := fmt.Sprint("liar-", i)
		for j := range 2 {
			_, err := nodes[0].node.Report(ctx, reputation.Report{Subject: subject, Type: "hallucination", Severity: "critical",
				TraceID: fmt.Sprintf("verify-%d-%d", i, j), DetectedBy: "hallucination-checker",
				Details: json.RawMessage(`{"claim":"invented a refund policy","n":` + fmt.Sprint(j) + `}`)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 40 {
		waitScore(t, nodes, fmt.Sprint("liar-", i), 100, 10*time.Second)
	}
}
