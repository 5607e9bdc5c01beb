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

// start runs the two agents and their sidecars.
func (d *demo) start() error {
	var err error
	if d.controlPlane, err = identity.GenerateKey(nil); err != nil {
		return err
	}
	if d.travelKey, err = identity.GenerateKey(nil); err != nil {
		return err
	}
	bankKey, err := identity.GenerateKey(nil)
	if err != nil {
		return err
	}
	d.bankAttest, err = identity.CreateAttestation(d.controlPlane, "demo-control-plane", identity.Claims{
		AgentID: "secure-bank-agent", CodebaseHash: identity.HashBytes([]byte("bank agent v1.2.0")),
		ConfigHash: identity.HashBytes([]byte("bank config")), VerificationKey: bankKey.PublicKey(),
	}, identity.AttestationOptions{TTL: time.Hour})
	if err != nil {
		return err
	}
	bankAgent := d.serveAgent(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok","agent":"secure-bank-agent","message":"payment scheduled"}`)
	})
	potAgent := d.serveAgent(func(w http.ResponseWriter, r *http.Request, body []byte) {
		d.potCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"stored forever"}`)
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bank := sidecar.Config{
		AgentURL: bankAgent, Manifest: demoManifest("secure_bank.json"), DataDir: filepath.Join(d.tmp, "secure-bank-agent"),
		OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
		Key: bankKey, Attestation: d.bankAttest,
		ControlPlaneKeys: map[string]ed25519.PublicKey{"demo-control-plane": d.controlPlane.PublicKey()},
		TrustedAgents:    map[string]ed25519.PublicKey{"travel-agent": d.travelKey.PublicKey()},
	}
	pot := sidecar.Config{
		AgentURL: potAgent, Manifest: demoManifest("untrusted_honeypot.json"), DataDir: filepath.Join(d.tmp, "honeypot-agent"),
		OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
	}
	if d.bankURL, _, err = d.serveSidecar(bank); err != nil {
		return fmt.Errorf("bank sidecar: %w", err)
	}
	if d.potURL, _, err = d.serveSidecar(pot); err != nil {
		return fmt.Errorf("honeypot sidecar: %w", err)
	}
	return d.startCaller(quiet)
}

// startCaller runs the booking agent's sidecar, with its egress proxy, and
// an impostor that claims to be a verified partner without any proof.
func (d *demo) startCaller(quiet *slog.Logger) error {
	bookingKey, err := identity.GenerateKey(nil)
	if err != nil {
		return err
	}
	bookingAttest, err := identity.CreateAttestation(d.controlPlane, "demo-control-plane", identity.Claims{
		AgentID: "booking-agent", CodebaseHash: identity.HashBytes([]byte("booking agent v3")),
		ConfigHash: identity.HashBytes([]byte("booking config")), VerificationKey: bookingKey.PublicKey(),
	}, identity.AttestationOptions{TTL: time.Hour})
	if err != nil {
		return err
	}
	warnBelow := 9
	booking := sidecar.Config{
		AgentURL: d.serveAgent(func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}),
		Manifest: demoManifest("booking_agent.json"), DataDir: filepath.Join(d.tmp, "booking-agent"),
		OverrideToken: d.overrideToken, AdminToken: d.adminToken, Logger: quiet,
		Key: bookingKey, Attestation: bookingAttest,
		ControlPlaneKeys: map[string]ed25519.PublicKey{"demo-control-plane": d.controlPlane.PublicKey()},
		EgressListen:     "127.0.0.1:0",
		// This agent asks a human before it talks to anyone it cannot trust
		// at 9 or more.
		Egress: sidecar.EgressConfig{Policy: policy.Config{WarnBelow: &warnBelow}},
	}
	if _, d.egressURL, err = d.serveSidecar(booking); err != nil {
		return fmt.Errorf("booking agent's sidecar: %w", err)
	}
	impostor := demoManifest("standard_agent.json")
	impostor.Identity.AgentID = "impostor-bank"
	impostor.TrustLevel = manifest.VerifiedPartner
	d.impostorURL, _, err = d.serveSidecar(sidecar.Config{
		AgentURL: d.serveAgent(func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			d.impostorCalls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}),
		Manifest: impostor, DataDir: filepath.Join(d.tmp, "impostor-bank"), Logger: quiet,
	})
	if err != nil {
		return fmt.Errorf("impostor's sidecar: %w", err)
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

// serveSidecar runs a sidecar on loopback and returns its URL and, when
// cfg sets EgressListen, its egress proxy's URL.
func (d *demo) serveSidecar(cfg sidecar.Config) (url, egress string, err error) {
	sc, err := sidecar.New(cfg)
	if err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sc.Close()
		return "", "", err
	}
	var eln net.Listener
	if cfg.EgressListen != "" {
		if eln, err = net.Listen("tcp", cfg.EgressListen); err != nil {
			ln.Close()
			sc.Close()
			return "", "", err
		}
		egress = "http://" + eln.Addr().String()
	}
	done := make(chan error, 1)
	go func() { done <- sc.ServeAll(d.ctx, ln, eln) }()
	d.done = append(d.done, done)
	return "http://" + ln.Addr().String(), egress, nil
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
