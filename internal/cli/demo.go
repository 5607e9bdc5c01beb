package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/examples/manifests"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/sidecar"
)

func newDemoCmd(s *streams) *cobra.Command {
	var keep string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the whole story on loopback: two agents, two sidecars, no set-up",
		Long: `Start two demo agents on loopback — a secure bank (verified partner,
ephemeral retention, attested by a demo control plane) and an untrusted
honeypot (permanent retention, human review) — each behind a real iatp
sidecar in this process, then play the story step by step and check every
answer. Ports are chosen by the OS and nothing is left behind, unless
--keep DIR keeps the sidecars' data directories (flight recorders) there.

Exit status: 0 when every step did what it should, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := newDemo(cmd.Context(), s.out, keep)
			if err != nil {
				return failf("demo: %v", err)
			}
			failed := d.play()
			if err := d.stop(); err != nil {
				return failf("demo: %v", err)
			}
			if failed > 0 {
				return failf("demo: %d step(s) did not do what they should", failed)
			}
			fmt.Fprintf(s.out, "\nAll steps passed.\n")
			if keep != "" {
				fmt.Fprintf(s.out, "The flight recorders are kept; check them with:\n  iatp audit verify %s\n  iatp audit verify %s\n",
					filepath.Join(keep, "secure-bank-agent"), filepath.Join(keep, "honeypot-agent"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "keep the sidecars' data directories under DIR (one per agent)")
	return cmd
}

// demo holds the running agents and sidecars.
type demo struct {
	out            io.Writer
	ctx            context.Context
	cancel         context.CancelFunc
	tmp            string // removed at the end unless kept
	keep           bool
	bankURL        string
	potURL         string
	impostorURL    string
	egressURL      string // the booking agent's egress proxy
	potCalls       atomic.Int64
	impostorCalls  atomic.Int64
	overrideToken  string
	adminToken     string
	controlPlane   identity.PrivateKey
	travelKey      identity.PrivateKey
	bankKey        identity.PrivateKey
	bookingKey     identity.PrivateKey
	verifierKey    identity.PrivateKey // a hallucination checker's
	bookingURL     string
	bankAttest     *identity.Attestation
	done           []chan error
	closers        []func()
	step, failures int
}

func newDemo(parent context.Context, out io.Writer, keep string) (*demo, error) {
	ctx, cancel := context.WithCancel(parent)
	d := &demo{out: out, ctx: ctx, cancel: cancel, overrideToken: sidecar.GenerateToken(), adminToken: sidecar.GenerateToken()}
	var err error
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			return nil, err
		}
		d.tmp, d.keep = keep, true
	} else if d.tmp, err = os.MkdirTemp("", "iatp-demo-"); err != nil {
		return nil, err
	}
	if err := d.start(); err != nil {
		_ = d.stop()
		return nil, err
	}
	return d, nil
}

// start runs the agents and their sidecars: the bank and the honeypot, the
// booking agent (with its egress proxy) and an impostor. The bank's and the
// booking agent's sidecars share reputation events over HTTP.
func (d *demo) start() error {
	var err error
	for _, k := range []*identity.PrivateKey{&d.controlPlane, &d.travelKey, &d.bankKey, &d.bookingKey, &d.verifierKey} {
		if *k, err = identity.GenerateKey(nil); err != nil {
			return err
		}
	}
	attest := func(agentID string, key identity.PrivateKey) (*identity.Attestation, error) {
		return identity.CreateAttestation(d.controlPlane, "demo-control-plane", identity.Claims{
			AgentID: agentID, CodebaseHash: identity.HashBytes([]byte(agentID + " code")),
			ConfigHash: identity.HashBytes([]byte(agentID + " config")), VerificationKey: key.PublicKey(),
		}, identity.AttestationOptions{TTL: time.Hour})
	}
	if d.bankAttest, err = attest("secure-bank-agent", d.bankKey); err != nil {
		return err
	}
	bookingAttest, err := attest("booking-agent", d.bookingKey)
	if err != nil {
		return err
	}
	// The listeners come first: sidecars name their mesh peers by URL.
	var lns [5]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
	}
	url := func(ln net.Listener) string { return "http://" + ln.Addr().String() }
	d.bankURL, d.potURL, d.bookingURL, d.egressURL, d.impostorURL = url(lns[0]), url(lns[1]), url(lns[2]), url(lns[3]), url(lns[4])

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("IATP_DEMO_DEBUG") != "" { // the sidecars' own logs, for debugging the demo
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cps := map[string]ed25519.PublicKey{"demo-control-plane": d.controlPlane.PublicKey()}
	ok := func(calls *atomic.Int64, answer string) string {
		return d.serveAgent(func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			if calls != nil {
				calls.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, answer)
		})
	}
	warnBelow := 9
	impostor := demoManifest("standard_agent.json")
	impostor.Identity.AgentID = "impostor-bank"
	impostor.TrustLevel = manifest.VerifiedPartner
	sidecars := []struct {
		name   string
		cfg    sidecar.Config
		ln     net.Listener
		egress net.Listener
	}{
		{"bank", sidecar.Config{
			AgentURL: ok(nil, `{"status":"ok","agent":"secure-bank-agent","message":"payment scheduled"}`),
			Manifest: demoManifest("secure_bank.json"), DataDir: filepath.Join(d.tmp, "secure-bank-agent"),
			OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
			Key: d.bankKey, Attestation: d.bankAttest, ControlPlaneKeys: cps,
			TrustedAgents: map[string]ed25519.PublicKey{"travel-agent": d.travelKey.PublicKey(), "booking-agent": d.bookingKey.PublicKey()},
			Reputation: sidecar.ReputationConfig{Peers: []string{d.bookingURL},
				Verifiers: map[string]ed25519.PublicKey{"hallucination-checker": d.verifierKey.PublicKey()}},
		}, lns[0], nil},
		{"honeypot", sidecar.Config{
			AgentURL: ok(&d.potCalls, `{"status":"stored forever"}`),
			Manifest: demoManifest("untrusted_honeypot.json"), DataDir: filepath.Join(d.tmp, "honeypot-agent"),
			OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
		}, lns[1], nil},
		{"booking agent", sidecar.Config{
			AgentURL: ok(nil, `{"status":"ok"}`),
			Manifest: demoManifest("booking_agent.json"), DataDir: filepath.Join(d.tmp, "booking-agent"),
			OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
			Key: d.bookingKey, Attestation: bookingAttest, ControlPlaneKeys: cps,
			// The bank's sidecar is a reporter this one trusts, and a peer.
			TrustedAgents: map[string]ed25519.PublicKey{"secure-bank-agent": d.bankKey.PublicKey()},
			Reputation:    sidecar.ReputationConfig{Peers: []string{d.bankURL}},
			EgressListen:  "on",
			// This agent asks a human before it talks to anyone it cannot
			// trust at 9 or more.
			Egress: sidecar.EgressConfig{Policy: policy.Config{WarnBelow: &warnBelow}},
		}, lns[2], lns[3]},
		{"impostor", sidecar.Config{
			AgentURL: ok(&d.impostorCalls, `{"status":"ok"}`),
			Manifest: impostor, DataDir: filepath.Join(d.tmp, "impostor-bank"), Logger: quiet,
		}, lns[4], nil},
	}
	for i, sc := range sidecars {
		if err := d.serveSidecar(sc.cfg, sc.ln, sc.egress); err != nil {
			for _, rest := range sidecars[i:] {
				rest.ln.Close()
				if rest.egress != nil {
					rest.egress.Close()
				}
			}
			return fmt.Errorf("%s's sidecar: %w", sc.name, err)
		}
	}
	return nil
}

// demoManifest is one of the example manifests, embedded in the binary so
// the demo needs no files.
func demoManifest(file string) *manifest.Manifest {
	data, err := manifests.Files.ReadFile(file)
	if err == nil {
		var m *manifest.Manifest
		if m, err = manifest.Parse(data); err == nil {
			return m
		}
	}
	panic("demo manifest " + file + ": " + err.Error()) // embedded at build time and tested
}

func (d *demo) serveAgent(h func(http.ResponseWriter, *http.Request, []byte)) string {
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		h(w, r, body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(ln) }()
	d.closers = append(d.closers, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// serveSidecar runs a sidecar on ln (and its egress proxy on eln, when
// not nil) until the demo stops.
func (d *demo) serveSidecar(cfg sidecar.Config, ln, eln net.Listener) error {
	sc, err := sidecar.New(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sc.ServeAll(d.ctx, ln, eln) }()
	d.done = append(d.done, done)
	return nil
}

// stop shuts the sidecars down (flushing their recorders), the agents, and
// removes the data unless it is kept.
func (d *demo) stop() error {
	d.cancel()
	var errs []error
	for _, done := range d.done {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range d.closers {
		c()
	}
	if !d.keep && d.tmp != "" {
		if err := os.RemoveAll(d.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// answer is one HTTP exchange of the story.
type answer struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
	err    error
}

func (a *answer) str(k string) string { s, _ := a.json[k].(string); return s }

func (d *demo) call(method, url, body string, header ...string) *answer {
	req, err := http.NewRequestWithContext(d.ctx, method, url, strings.NewReader(body))
	if err != nil {
		return &answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return d.send(req)
}

func (d *demo) send(req *http.Request) *answer {
	return d.sendWith(&http.Client{Timeout: 10 * time.Second}, req)
}

// viaEgress sends a call of the booking agent through its egress proxy, as
// an agent does that sets HTTP_PROXY.
func (d *demo) viaEgress(url, body string, header ...string) *answer {
	req, err := http.NewRequestWithContext(d.ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return &answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	proxy, err := neturl.Parse(d.egressURL)
	if err != nil {
		return &answer{err: err}
	}
	return d.sendWith(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}, req)
}

func (d *demo) sendWith(client *http.Client, req *http.Request) *answer {
	resp, err := client.Do(req)
	if err != nil {
		return &answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := &answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
	_ = json.Unmarshal(b, &a.json)
	return a
}

// check prints one step and whether it did what it should.
func (d *demo) check(title string, a *answer, wantStatus int, problems ...string) {
	d.step++
	var bad []string
	if a != nil && a.err != nil {
		bad = append(bad, a.err.Error())
	} else if a != nil && a.status != wantStatus {
		bad = append(bad, fmt.Sprintf("got HTTP %d, want %d: %s", a.status, wantStatus, clip(string(a.body), 200)))
	}
	for _, p := range problems {
		if p != "" {
			bad = append(bad, p)
		}
	}
	status := ""
	if a != nil {
		status = fmt.Sprintf("HTTP %d", a.status)
	}
	mark := "✓"
	if len(bad) > 0 {
		mark = "✗"
		d.failures++
	}
	fmt.Fprintf(d.out, "\n%s %2d. %s  %s\n", mark, d.step, title, status)
	for _, b := range bad {
		fmt.Fprintf(d.out, "      problem: %s\n", b)
	}
}

func (d *demo) note(format string, args ...any) {
	fmt.Fprintf(d.out, "      "+format+"\n", args...)
}

func expect(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return fmt.Sprintf(format, args...)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
