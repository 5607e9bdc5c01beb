package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/reputation"
	"github.com/iatp/iatp/reputation/gossip"
)

// sidecar is the reputation half of one sidecar: its node, its HTTP
// endpoints and its gossip with the others.
type sidecar struct {
	id      string
	key     identity.PrivateKey
	node    *reputation.Node
	srv     *httptest.Server
	handler atomic.Pointer[gossip.Handler] // replaced on restart
}

// reputationStory runs three sidecars' reputation nodes in dir and tells
// what happens to out.
func reputationStory(ctx context.Context, dir string, out io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	names := []string{"banking-agent", "billing-agent", "search-agent"}
	factChecker, err := identity.GenerateKey(nil)
	if err != nil {
		return err
	}
	// Each sidecar trusts the others' keys (identity.trusted_agents, or
	// their verified attestations): they are the mesh's reporters.
	keys := map[string]identity.PrivateKey{}
	reporters := map[string]ed25519.PublicKey{}
	for _, n := range names {
		k, err := identity.GenerateKey(nil)
		if err != nil {
			return err
		}
		keys[n], reporters[n] = k, k.PublicKey()
	}
	var sidecars []*sidecar
	for _, n := range names {
		sc := &sidecar{id: n, key: keys[n]}
		sc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := sc.handler.Load(); h != nil {
				h.ServeHTTP(w, r)
				return
			}
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}))
		sidecars = append(sidecars, sc)
	}
	start := func(sc *sidecar) error {
		node, err := reputation.Open(ctx, reputation.NodeConfig{
			Dir: filepath.Join(dir, sc.id), AgentID: sc.id, Key: sc.key, Reporters: reporters, Logger: quiet,
		})
		if err != nil {
			return err
		}
		h, err := gossip.NewHandler(gossip.HandlerConfig{
			Node: node, Logger: quiet,
			Verifiers: map[string]ed25519.PublicKey{"fact-checker": factChecker.PublicKey()},
			RecordSlash: func(_ context.Context, r gossip.SlashRecord) {
				say("  (%s's flight recorder: slash of %s under trace %s by %s)", sc.id, r.Result.Event.AgentID, r.TraceID, r.Caller)
			},
		})
		if err != nil {
			return err
		}
		sc.handler.Store(h)
		var peers []string
		for _, o := range sidecars {
			if o != sc {
				peers = append(peers, o.srv.URL)
			}
		}
		if _, err := gossip.New(gossip.Config{Node: node, Key: sc.key, Peers: peers, Logger: quiet}); err != nil {
			return err
		}
		sc.node = node
		return nil
	}
	for _, sc := range sidecars {
		if err := start(sc); err != nil {
			return err
		}
	}
	defer func() {
		for _, sc := range sidecars {
			sc.node.Close(ctx)
			sc.srv.Close()
		}
	}()
	scores := func(agent string) string {
		var b bytes.Buffer
		for _, sc := range sidecars {
			p, ok := sc.node.Score(agent)
			if !ok {
				p = reputation.NeutralScore
			}
			fmt.Fprintf(&b, " %s=%s", sc.id, p)
		}
		return b.String()
	}
	settle := func(agent string, want reputation.Points) {
		for range 500 {
			all := true
			for _, sc := range sidecars {
				if p, ok := sc.node.Score(agent); !ok || p != want {
					all = false
				}
			}
			if all {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	say("\n— Reputation across three sidecars")
	slash := []byte(`{"reason":"hallucination","severity":"critical","trace_id":"trace-42","details":{"claim":"refunds take 90 days","customer":"jane@example.com"}}`)
	// 7. An anonymous slash is refused.
	resp, err := http.Post(sidecars[0].srv.URL+"/reputation/honeypot-agent/slash", "application/json", bytes.NewReader(slash))
	if err != nil {
		return err
	}
	resp.Body.Close()
	say("✗ %-36s refused: %s", "anonymous slash", resp.Status)

	// 8. The fact-checker signs its slash (RFC 9421); the event spreads.
	req, _ := http.NewRequest(http.MethodPost, sidecars[0].srv.URL+"/reputation/honeypot-agent/slash", bytes.NewReader(slash))
	req.Header.Set(identity.HeaderTraceID, "slash-1")
	signer := &identity.RequestSigner{AgentID: "fact-checker", Key: factChecker}
	if err := signer.SignRequest(req, slash); err != nil {
		return err
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	say("✓ %-36s accepted: %v", "fact-checker's signed slash", answer)
	settle("honeypot-agent", 300)
	say("  scores of honeypot-agent:%s", scores("honeypot-agent"))

	// 9. A forged event — the slash re-signed by nobody, aimed elsewhere —
	// is refused by every node.
	evs, err := sidecars[0].node.Events([]string{fmt.Sprint(answer["event_id"])})
	if err != nil || len(evs) != 1 {
		return fmt.Errorf("the slash event is not stored: %v", err)
	}
	forged := evs[0]
	forged.Body.Subject = "banking-agent"
	err = sidecars[1].node.Apply(ctx, forged)
	say("✗ %-36s refused: %v", "forged event", err)

	// 10. Outcomes count when the other side of a call reports them: the
	// banking agent praising itself moves nothing; billing's egress
	// reporting twenty good calls to it raises it by the gain cap (+1.00).
	for range 20 {
		sidecars[0].node.Observe("banking-agent", reputation.OutcomeSuccess)
		sidecars[1].node.Observe("banking-agent", reputation.OutcomeSuccess)
	}
	sidecars[0].node.Flush(ctx)
	sidecars[1].node.Flush(ctx)
	settle("banking-agent", 600)
	say("✓ %-36s scores:%s", "20 calls observed by billing", scores("banking-agent"))

	// 11. A restarted sidecar keeps its scores.
	search := sidecars[2]
	if err := search.node.Close(ctx); err != nil {
		return err
	}
	if err := start(search); err != nil {
		return err
	}
	p, _ := search.node.Score("honeypot-agent")
	say("✓ %-36s honeypot-agent=%s (%s)", "search-agent after a restart", p, reputation.Level(p))
	return nil
}
