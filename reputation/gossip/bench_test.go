package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/iatp/iatp/reputation"
)

// ringPlus returns each node's peers: the next node on a ring (so every
// node reaches every other) and extra random others.
func ringPlus(n, extra int, seed uint64) func(int) []int {
	rng := rand.New(rand.NewPCG(seed, 1))
	peers := make([][]int, n)
	for i := range peers {
		seen := map[int]bool{i: true, (i + 1) % n: true}
		peers[i] = []int{(i + 1) % n}
		for len(peers[i]) < 1+extra {
			j := rng.IntN(n)
			if !seen[j] {
				seen[j] = true
				peers[i] = append(peers[i], j)
			}
		}
	}
	return func(i int) []int { return peers[i] }
}

// BenchmarkSlashReaches50NodesHTTP measures the time from a slash on one
// node to its score on every node of a 50-node mesh on loopback, where
// each node pushes to 4 peers (the next on a ring and 3 random) and
// relays what it receives. ns/op is that time.
func BenchmarkSlashReaches50NodesHTTP(b *testing.B) {
	const n = 50
	nodes := startMesh(b, n, ringPlus(n, 3, 42), nil)
	ctx := context.Background()
	var worst time.Duration
	i := 0
	for b.Loop() {
		subject := fmt.Sprint("liar-", i)
		if _, err := nodes[i%n].node.Report(ctx, reputation.Report{Subject: subject, Type: "hallucination", Severity: "critical"}); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, waitScore(b, nodes, subject, 300, 30*time.Second))
		i++
	}
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
