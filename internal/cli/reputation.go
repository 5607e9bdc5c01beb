package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/reputation"
)

// reputationFlags are the flags every iatp reputation subcommand shares.
type reputationFlags struct {
	sidecar string
	asJSON  bool
	timeout time.Duration
}

func (f *reputationFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.sidecar, "sidecar", "http://127.0.0.1:8001", "the sidecar's URL")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the sidecar's JSON answer")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "give up on the sidecar after this long")
}

func newReputationCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reputation",
		Short: "Read and report agents' reputation at a sidecar (get, list, slash, export, import)",
		Long: `Talk to a sidecar's reputation endpoints (PROTOCOL §10, docs/reputation.md).

get and list read scores; slash reports misbehaviour, with the admin token
(IATP_ADMIN_TOKEN) or signed by a verifier's key (--key); export prints the
Python package's snapshot; import sends one (admin token).`,
	}
	cmd.AddCommand(newReputationGetCmd(s), newReputationListCmd(s), newReputationSlashCmd(s),
		newReputationExportCmd(s), newReputationImportCmd(s))
	return cmd
}

func newReputationGetCmd(s *streams) *cobra.Command {
	var f reputationFlags
	cmd := &cobra.Command{
		Use:   "get AGENT_ID",
		Short: "Show an agent's score, trust level, counts and recent events",
		Args:  exactArgs(1, "the agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := f.call(cmd.Context(), http.MethodGet, "/reputation/"+url.PathEscape(args[0]), nil, nil)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeIndented(s.out, body)
			}
			var snap reputation.Snapshot
			if err := json.Unmarshal(body, &snap); err != nil {
				return failf("the sidecar's answer is not a reputation: %v", err)
			}
			fmt.Fprintf(s.out, "%s: %s (%s)\n", snap.AgentID, snap.Score, snap.TrustLevel)
			fmt.Fprintf(s.out, "  events: %d (%d positive, %d negative)\n", snap.TotalEvents, snap.PositiveEvents, snap.NegativeEvents)
			for _, e := range snap.RecentEvents {
				fmt.Fprintf(s.out, "  %s  %s %s  %s  by %s\n", e.Time.UTC().Format(time.RFC3339), e.Type, e.Severity, e.Delta, e.DetectedBy)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newReputationListCmd(s *streams) *cobra.Command {
	var f reputationFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every agent the sidecar holds a score for, lowest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := f.call(cmd.Context(), http.MethodGet, "/reputation/export", nil, nil)
			if err != nil {
				return err
			}
			var exp reputation.Export
			if err := json.Unmarshal(body, &exp); err != nil {
				return failf("the sidecar's answer is not a reputation export: %v", err)
			}
			type row struct {
				ID    string            `json:"agent_id"`
				Score reputation.Points `json:"score"`
				Level string            `json:"trust_level"`
			}
			rows := make([]row, 0, len(exp.ReputationData))
			for id, a := range exp.ReputationData {
				rows = append(rows, row{id, a.Score, reputation.Level(a.Score)})
			}
			slices.SortFunc(rows, func(a, b row) int {
				if a.Score != b.Score {
					return int(a.Score - b.Score)
				}
				return strings.Compare(a.ID, b.ID)
			})
			if f.asJSON {
				return encodeJSONIndent(s.out, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(s.out, "no agent has a reputation at this sidecar yet")
			}
			for _, r := range rows {
				fmt.Fprintf(s.out, "%-6s %-17s %s\n", r.Score, r.Level, r.ID)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newReputationSlashCmd(s *streams) *cobra.Command {
	var (
		f                       reputationFlags
		reason, severity, trace string
		details                 string
		keyPath, keyID          string
	)
	cmd := &cobra.Command{
		Use:   "slash AGENT_ID",
		Short: "Report an agent's misbehaviour (admin token, or a verifier's signature with --key)",
		Long: `Report misbehaviour of AGENT_ID at the sidecar: reason hallucination,
failure, timeout or error; a hallucination's severity critical, high, medium
(the default) or low.

Credential: --key FILE signs the request (RFC 9421) as the verifier --key-id
(which the sidecar lists under reputation.verifiers); without --key, the
admin token from IATP_ADMIN_TOKEN is sent.`,
		Args: exactArgs(1, "the agent id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := map[string]any{"reason": reason}
			if severity != "" {
				req["severity"] = severity
			}
			if trace != "" {
				req["trace_id"] = trace
			}
			if details != "" {
				var d map[string]any
				if err := json.Unmarshal([]byte(details), &d); err != nil {
					return usagef("--details must be a JSON object: %v", err)
				}
				req["details"] = d
			}
			body, _ := json.Marshal(req)
			sign, err := f.credential(keyPath, keyID)
			if err != nil {
				return err
			}
			out, err := f.call(cmd.Context(), http.MethodPost, "/reputation/"+url.PathEscape(args[0])+"/slash", body, sign)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeIndented(s.out, out)
			}
			var res struct {
				AgentID    string            `json:"agent_id"`
				NewScore   reputation.Points `json:"new_score"`
				TrustLevel string            `json:"trust_level"`
				Reason     string            `json:"reason"`
				Severity   string            `json:"severity"`
			}
			_ = json.Unmarshal(out, &res)
			what := res.Reason
			if res.Severity != "" {
				what = res.Severity + " " + what
			}
			fmt.Fprintf(s.out, "slashed %s for %s: now %s (%s)\n", res.AgentID, what, res.NewScore, res.TrustLevel)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&reason, "reason", "hallucination", "hallucination, failure, timeout or error")
	cmd.Flags().StringVar(&severity, "severity", "", "a hallucination's severity: critical, high, medium or low")
	cmd.Flags().StringVar(&trace, "trace-id", "", "the trace the report concerns")
	cmd.Flags().StringVar(&details, "details", "", "a JSON object with what the verifier found (scrubbed before it is stored)")
	cmd.Flags().StringVar(&keyPath, "key", "", "sign as a verifier with this private key (from iatp keygen)")
	cmd.Flags().StringVar(&keyID, "key-id", "", "the verifier's id the sidecar knows the key by (with --key; default: the key file's name)")
	return cmd
}

func newReputationExportCmd(s *streams) *cobra.Command {
	var f reputationFlags
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print the sidecar's reputation snapshot (the Python package's format)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := f.call(cmd.Context(), http.MethodGet, "/reputation/export", nil, nil)
			if err != nil {
				return err
			}
			return writeIndented(s.out, body)
		},
	}
	f.add(cmd)
	return cmd
}

func newReputationImportCmd(s *streams) *cobra.Command {
	var f reputationFlags
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Send a reputation snapshot to the sidecar (admin token; - reads standard input)",
		Args:  exactArgs(1, "the snapshot file, or - for standard input"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = s.in
			if args[0] != "-" {
				file, err := os.Open(args[0])
				if err != nil {
					return usagef("%v", err)
				}
				defer file.Close()
				r = file
			}
			body, err := wire.ReadAll(r, 16<<20)
			if err != nil {
				return usagef("%s: %v", args[0], err)
			}
			sign, err := f.credential("", "")
			if err != nil {
				return err
			}
			out, err := f.call(cmd.Context(), http.MethodPost, "/reputation/import", body, sign)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeIndented(s.out, out)
			}
			var res struct {
				Updated int `json:"agents_updated"`
			}
			_ = json.Unmarshal(out, &res)
			fmt.Fprintf(s.out, "imported: %d agent(s) updated\n", res.Updated)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// credential returns what authorizes a write: a verifier's signature with
// keyPath, else the admin token from the environment.
func (f *reputationFlags) credential(keyPath, keyID string) (func(*http.Request, []byte) error, error) {
	if keyPath != "" {
		key, err := identity.ReadPrivateKeyFile(keyPath)
		if err != nil {
			return nil, usagef("--key: %v", err)
		}
		if keyID == "" {
			keyID = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(keyPath), ".key"), ".pem")
		}
		signer := &identity.RequestSigner{AgentID: keyID, Key: key}
		return func(r *http.Request, body []byte) error {
			r.Header.Set(wire.TraceID, pipeline.NewTraceID())
			return signer.SignRequest(r, body)
		}, nil
	}
	token := strings.TrimSpace(os.Getenv("IATP_ADMIN_TOKEN"))
	if token == "" {
		return nil, usagef("no credential: set IATP_ADMIN_TOKEN to the sidecar's admin token, or sign as a verifier with --key FILE --key-id ID")
	}
	return func(r *http.Request, _ []byte) error {
		r.Header.Set(wire.Authorization, "Bearer "+token)
		return nil
	}, nil
}

// call sends a request to the sidecar and returns its answer's body, or an
// error that quotes the sidecar's reason.
func (f *reputationFlags) call(ctx context.Context, method, path string, body []byte, sign func(*http.Request, []byte) error) ([]byte, error) {
	base := strings.TrimRight(f.sidecar, "/")
	if u, err := url.Parse(base); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, usagef("--sidecar %q: want the sidecar's URL, such as http://127.0.0.1:8001", f.sidecar)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, usagef("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sign != nil {
		if err := sign(req, body); err != nil {
			return nil, failf("sign the request: %v", err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, failf("%s %s: %v (is the sidecar running at %s?)", method, path, err, base)
	}
	defer resp.Body.Close()
	out, err := wire.ReadAll(resp.Body, 64<<20)
	if err != nil {
		return nil, failf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		return nil, failf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	return out, nil
}

// writeIndented prints a JSON answer indented.
func writeIndented(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		return failf("the sidecar's answer is not JSON: %v", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
