package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
)

// scanResult is the --json output of iatp scan.
type scanResult struct {
	Status  string           `json:"status"`  // success (exit 0) | fail (exit 1)
	Verdict manifest.Verdict `json:"verdict"` // valid | high-risk | invalid, as iatp verify says
	URL     string           `json:"url"`
	AgentID string           `json:"agent_id"`
	// TrustScore is the 0–10 score × 10, as claimed; null when the
	// manifest is invalid.
	TrustScore    *int   `json:"trust_score"`
	RiskLevel     string `json:"risk_level"` // LOW ≥ 80, MEDIUM ≥ 50, HIGH below (and when invalid)
	TrustLevel    string `json:"trust_level"`
	Reversibility string `json:"reversibility"`
	Retention     string `json:"retention"`
	// ProvenTrustScore is the score with the claimed trust level capped by
	// proof (PROTOCOL §2); scan checks no proof, so claims above standard
	// count as standard — what an iatp sidecar without keys would use.
	ProvenTrustScore *int `json:"proven_trust_score"`
	// PeerTrustScore is the score a peer running the Python package
	// computes: without the training_consent term (PROTOCOL §2).
	PeerTrustScore *int `json:"peer_trust_score"`
	// Proven says what the agent proved, checked against --trusted-key:
	// attested, signed, or claimed (nothing); empty without --trusted-key.
	Proven string `json:"proven,omitempty"`
	manifest.Findings
}

func newScanCmd(s *streams) *cobra.Command {
	var (
		asJSON, verbose bool
		timeout         time.Duration
		trusted         []string
	)
	cmd := &cobra.Command{
		Use:   "scan URL",
		Short: "Fetch a running agent's manifest, score it and show its risk",
		Long: `Fetch URL/.well-known/agent-manifest, validate and score it, and show a
0–100 risk view: LOW at 80 and above, MEDIUM at 50 and above, HIGH below.

The findings (errors, high-risk findings, warnings) are those iatp verify
reports for the same manifest, in the same words. A peer running the
widely installed Python package has no training_consent term in its score
(PROTOCOL §2): scan shows its score too when it differs.

Exit status: 0 when the manifest was fetched and is valid (warnings
allowed); 1 when it cannot be fetched, is invalid or is high-risk; 2 on
bad arguments.`,
		Args: exactArgs(1, "the agent's URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usagef("--timeout must be positive, got %s", timeout)
			}
			target, err := manifestURL(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			m, f, err := fetchManifest(cmd.Context(), target, timeout)
			if err != nil {
				return failf("scan %s: %v", target, err)
			}
			res := scanResult{
				Status: "success", Verdict: f.Verdict(), URL: target, AgentID: m.AgentID(), RiskLevel: "HIGH",
				TrustLevel: string(m.TrustLevel), Reversibility: string(m.Reversibility.Level), Retention: string(m.Privacy.RetentionPolicy),
				Findings: *f,
			}
			if f.FieldsValid() {
				score, proven, peer := m.TrustScore()*10, m.ScoreAs(manifest.CapTrustLevel(m.TrustLevel, manifest.Proof{}))*10, m.PeerTrustScore()*10
				res.TrustScore, res.ProvenTrustScore, res.PeerTrustScore = &score, &proven, &peer
				res.RiskLevel = riskLevel(score)
			}
			if len(trusted) > 0 && f.FieldsValid() {
				keys, err := trustedKeys(trusted)
				if err != nil {
					return usagef("%v", err)
				}
				d, err := client.NewDiscoverer(client.DiscoveryConfig{PinnedKeys: keys, ControlPlaneKeys: keys, FetchTimeout: timeout})
				if err != nil {
					return usagef("%v", err)
				}
				t, err := d.Discover(cmd.Context(), strings.TrimSuffix(target, client.ManifestPath))
				if err != nil {
					return failf("scan %s: %v", target, err)
				}
				proven := m.ScoreAs(t.Level) * 10
				res.ProvenTrustScore, res.Proven = &proven, t.Proven
			}
			if res.Verdict != manifest.VerdictValid {
				res.Status = "fail"
			}
			if asJSON {
				if err := encodeJSONIndent(s.out, res); err != nil {
					return err
				}
			} else {
				printScan(s.out, &res, m, verbose)
			}
			if res.Status != "success" {
				return silentFail
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the agent's capabilities")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up on the agent after this long")
	cmd.Flags().StringArrayVar(&trusted, "trusted-key", nil, "ID=PUBFILE or PUBFILE: check the manifest's signature and attestation against this key (repeatable)")
	return cmd
}

// manifestURL turns what the user typed into the manifest's URL: http:// is
// prepended when there is no scheme and a trailing slash is dropped.
func manifestURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: only http and https URLs can be scanned", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/") + "/.well-known/agent-manifest", nil
}

// fetchManifest GETs and assesses a manifest, bounding time and size, and
// says which step failed. An invalid manifest is returned with its findings,
// not as an error.
func fetchManifest(ctx context.Context, target string, timeout time.Duration) (*manifest.Manifest, *manifest.Findings, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, describeFetchError(err, timeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP status %d (%s): is this an iatp sidecar or an agent that publishes a manifest?", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	body, err := wire.ReadAll(resp.Body, manifest.MaxSize)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return nil, nil, fmt.Errorf("manifest larger than %d bytes", manifest.MaxSize)
	case err != nil:
		return nil, nil, describeFetchError(err, timeout)
	}
	if !json.Valid(body) {
		return nil, nil, fmt.Errorf("response body is not JSON (%s)", describeBody(body, resp.Header.Get("Content-Type")))
	}
	m, f, err := manifest.Assess(body)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest invalid: %v", err)
	}
	return m, f, nil
}

func describeFetchError(err error, timeout time.Duration) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("timed out after %s (raise --timeout if the agent is slow)", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused: nothing listens there (is the sidecar running, and on that port?)")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("cannot resolve host %q: %v", dnsErr.Name, dnsErr.Err)
	}
	return fmt.Errorf("request failed: %v", err)
}

func describeBody(body []byte, contentType string) string {
	if contentType == "" {
		contentType = "no content type"
	}
	snippet := strings.TrimSpace(string(body))
	if len(snippet) > 60 {
		snippet = snippet[:60] + "…"
	}
	return fmt.Sprintf("%s, starts with %q", contentType, snippet)
}

func riskLevel(score100 int) string {
	switch {
	case score100 >= 80:
		return "LOW"
	case score100 >= 50:
		return "MEDIUM"
	}
	return "HIGH"
}

func printScan(w io.Writer, res *scanResult, m *manifest.Manifest, verbose bool) {
	fmt.Fprintf(w, "Scanned %s\n\n", res.URL)
	if res.TrustScore == nil {
		fmt.Fprintf(w, "Trust score: - (the manifest is invalid)\n")
		printFindings(w, &res.Findings)
		fmt.Fprintln(w)
		fmt.Fprintln(w, verdictLine(&res.Findings, "Its operator must fix the fields named above (iatp verify on the file says the same)."))
		return
	}
	fmt.Fprintf(w, "Trust score: %d/100 (%s risk)\n", *res.TrustScore, res.RiskLevel)
	switch {
	case res.Proven != "":
		fmt.Fprintf(w, "  Proven against --trusted-key: %s → %d/100.\n", res.Proven, *res.ProvenTrustScore)
	case *res.ProvenTrustScore != *res.TrustScore:
		fmt.Fprintf(w, "  With unproven claims capped: %d/100 — the claimed level %s is not proven by an attestation or a signature here (check them with --trusted-key).\n",
			*res.ProvenTrustScore, res.TrustLevel)
	}
	if *res.PeerTrustScore != *res.TrustScore {
		fmt.Fprintf(w, "  A peer running the Python package: %d/100 — its score has no training_consent term (PROTOCOL §2).\n", *res.PeerTrustScore)
	}
	fmt.Fprintf(w, "\nAgent profile:\n")
	fmt.Fprintf(w, "  Agent ID:       %s\n", res.AgentID)
	fmt.Fprintf(w, "  Trust level:    %s (claimed)\n", res.TrustLevel)
	fmt.Fprintf(w, "  Reversibility:  %s\n", res.Reversibility)
	fmt.Fprintf(w, "  Retention:      %s\n", res.Retention)
	if m.Identity.Owner != "" {
		fmt.Fprintf(w, "  Owner:          %s\n", m.Identity.Owner)
	}
	fmt.Fprintf(w, "\nIndicators:\n")
	indicator(w, m.Capabilities.Idempotency, "idempotent: duplicate requests are safe", "not idempotent: retries may repeat side effects")
	indicator(w, m.Reversibility.Level.Reversible(), "reversible ("+string(m.Reversibility.Level)+")", "not reversible: what it does cannot be undone")
	indicator(w, !m.Privacy.RetentionPolicy.Indefinite(), "limited retention ("+string(m.Privacy.RetentionPolicy)+")", "unlimited retention ("+string(m.Privacy.RetentionPolicy)+"): your data is kept indefinitely")
	indicator(w, !m.Privacy.HumanInLoop, "no human review", "humans may review your data")
	if m.Privacy.TrainingConsent {
		indicator(w, false, "", "may train on your data")
	}
	if verbose {
		printCapabilities(w, m)
	}
	printFindings(w, &res.Findings)
	if res.RiskLevel == "HIGH" {
		fmt.Fprintf(w, "\nRecommendations (HIGH risk):\n")
		fmt.Fprintf(w, "  - Do not send it personal, payment or secret data.\n")
		if !m.Reversibility.Level.Reversible() {
			fmt.Fprintf(w, "  - Only send requests you can afford to have carried out for good.\n")
		}
		fmt.Fprintf(w, "  - Put an iatp sidecar in front of calls to it: requests will need a user override and are quarantined.\n")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, verdictLine(&res.Findings, ""))
}

func indicator(w io.Writer, good bool, goodText, badText string) {
	if good {
		fmt.Fprintf(w, "  ✓ %s\n", goodText)
	} else {
		fmt.Fprintf(w, "  ✗ %s\n", badText)
	}
}
