package natsmesh

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iatp/iatp/reputation"
)

// BenchmarkSlashReaches50NodesNATS measures the time from a slash on one
// node to its score on every node of a 50-node mesh sharing one embedded
// JetStream server on loopback. ns/op is that time.
func BenchmarkSlashReaches50NodesNATS(b *testing.B) {
	const n = 50
	srv := startServer(b, -1, b.TempDir())
	reporters := reportersOf(b, n)
	nodes := make([]*natsNode, n)
	for i := range nodes {
		nodes[i] = startNode(b, srv.ClientURL(), i, reporters)
	}
	ctx := context.Background()
	// Wait until every consumer is set up.
	if _, err := nodes[0].node.Report(ctx, reputation.Report{Subject: "warmup", Type: "error"}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 30*time.Second, "warm-up", allHave(nodes, "warmup", 450))
	var worst time.Duration
	i := 0
	for b.Loop() {
		subject := fmt.Sprint("liar-", i)
		if _, err := nodes[i%n].node.Report(ctx, reputation.Report{Subject: subject, Type: "hallucination", Severity: "critical"}); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, waitFor(b, 30*time.Second, subject, allHave(nodes, subject, 300)))
		i++
	}
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
