package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/policy"
)

// Exit statuses of iatp handshake beside exitOK (allow), exitFail and
// exitUsage.
const (
	exitWarn  = 3
	exitBlock = 4
)

// handshakeResult is the --json output of iatp handshake.
type handshakeResult struct {
	URL      string          `json:"url"`
	Decision client.Decision `json:"decision"`
	Claimed  string          `json:"claimed_trust_level"`
	Counted  string          `json:"counted_trust_level"`
	Proof    handshakeProof  `json:"proof"`
	Problems []string        `json:"problems,omitempty"`
}

type handshakeProof struct {
	Attested          bool   `json:"attested"`
	AttestationReason string `json:"attestation_reason,omitempty"`
	Signed            bool   `json:"signed_by_known_key"`
	SignatureReason   string `json:"signature_reason,omitempty"`
	Reputation        string `json:"reputation"`
}

func newHandshakeCmd(s *streams) *cobra.Command {
	var (
		asJSON       bool
		scopes, caps []string
		trusted      []string
		timeout      time.Duration
		warnBelow    int
	)
	cmd := &cobra.Command{
		Use:   "handshake URL",
		Short: "Run the handshake's discover and validate phases against a live sidecar and print the decision",
		Long: `Run phases 1 and 2 of the IATP handshake against the sidecar at URL, as
an egress sidecar does before a call leaves: fetch its manifest and
attestation, check their proofs against the keys you trust, cap the claimed
trust level by what is proven (PROTOCOL §2), then apply the built-in rules,
the required scopes and capabilities, and the warnings, to a call with an
empty JSON body. Nothing is sent to the agent.

It prints the decision, the effective trust score, what was proven (manifest
signature, attestation) and every reason.

--trusted-key ID=PUBFILE (or PUBFILE, whose name without .pub is the ID)
trusts a key: as the control-plane key ID for attestations, and as the pinned
key of agent ID for manifest signatures. Repeatable.

Exit status: 0 allow, 3 warn (449), 4 block (403), 1 when the handshake
could not run, 2 on bad arguments.`,
		Args: exactArgs(1, "the sidecar's URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := trustedKeys(trusted)
			if err != nil {
				return usagef("%v", err)
			}
			if timeout <= 0 {
				return usagef("--timeout must be positive, got %s", timeout)
			}
			base, err := manifestURL(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			base = strings.TrimSuffix(base, client.ManifestPath)
			pc := policy.Config{RequiredScopes: scopes, RequiredCapabilities: caps}
			if cmd.Flags().Changed("warn-below") {
				pc.WarnBelow = &warnBelow
			}
			c, err := client.New(client.Config{AgentID: "iatp-handshake", Policy: pc,
				Discovery: client.DiscoveryConfig{PinnedKeys: keys, ControlPlaneKeys: keys, FetchTimeout: timeout}})
			if err != nil {
				return usagef("%v", err)
			}
			t, err := c.Discover(cmd.Context(), base)
			if err != nil {
				return failf("handshake %s: %v", base, err)
			}
			d, err := c.Evaluate(cmd.Context(), client.Request{Method: "POST", URL: base + "/proxy", Body: []byte("{}")})
			if err != nil {
				return failf("handshake %s: %v", base, err)
			}
			res := handshakeResult{URL: base, Decision: d, Claimed: string(t.Claimed), Counted: string(t.Level), Problems: t.Problems,
				Proof: handshakeProof{Attested: t.Proof.Attested, Signed: t.Proof.SignedByKnownKey, Reputation: "none held (this command has no reputation store)"}}
			if e := t.Proof.AttestationErr; e != nil {
				res.Proof.AttestationReason = e.Error()
			}
			if e := t.Proof.SignatureErr; e != nil {
				res.Proof.SignatureReason = e.Error()
			}
			if asJSON {
				if err := encodeJSONIndent(s.out, res); err != nil {
					return err
				}
			} else {
				printHandshake(s.out, &res)
			}
			switch d.Decision {
			case "allow":
				return nil
			case "warn":
				return &exitError{code: exitWarn, err: errSilent}
			}
			return &exitError{code: exitBlock, err: errSilent}
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringArrayVar(&scopes, "require-scope", nil, "a scope the target must have (repeatable)")
	f.StringArrayVar(&caps, "require-capability", nil, "a capability the target must have: "+strings.Join(policy.Capabilities, ", ")+" (repeatable)")
	f.StringArrayVar(&trusted, "trusted-key", nil, "ID=PUBFILE or PUBFILE: a control-plane or agent key to trust (repeatable)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "give up on the target after this long")
	f.IntVar(&warnBelow, "warn-below", policy.DefaultWarnBelow, "warn when the effective trust score is below this")
	return cmd
}

// errSilent is the error of an exit status that says it all.
var errSilent = errors.New("")

// trustedKeys reads --trusted-key values: ID=PUBFILE, or PUBFILE named
// ID.pub.
func trustedKeys(vals []string) (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	for _, v := range vals {
		id, path, ok := strings.Cut(v, "=")
		if !ok {
			path = v
			id = strings.TrimSuffix(filepath.Base(v), ".pub")
		}
		pub, err := identity.ReadPublicKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("--trusted-key %s: %v", v, err)
		}
		keys[id] = pub
	}
	return keys, nil
}

func printHandshake(w io.Writer, r *handshakeResult) {
	d := r.Decision
	fmt.Fprintf(w, "%s: %s\n", r.URL, strings.ToUpper(d.Decision))
	fmt.Fprintf(w, "  target         %s\n", d.Target)
	fmt.Fprintf(w, "  trust score    %d/10 (claims %s, counts as %s)\n", d.TrustScore, r.Claimed, r.Counted)
	fmt.Fprintf(w, "  proven         %s\n", d.Proven)
	mark := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "  attestation    %s%s\n", mark(r.Proof.Attested), reason(r.Proof.AttestationReason))
	fmt.Fprintf(w, "  signature      %s%s\n", mark(r.Proof.Signed), reason(r.Proof.SignatureReason))
	fmt.Fprintf(w, "  reputation     %s\n", r.Proof.Reputation)
	switch d.Decision {
	case "block":
		fmt.Fprintf(w, "  blocked by     %s: %s\n", d.Rule, d.Reason)
	case "warn":
		fmt.Fprintf(w, "  warnings (a call needs the operator's override token):\n")
		for _, x := range d.Warnings {
			fmt.Fprintf(w, "    • %s\n", x)
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  note           %s\n", p)
	}
}

func reason(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
