package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
)

func newAttestCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attest hash|sign|verify",
		Short: "Hash a codebase, sign and verify attestations (control plane)",
		Long: `A control plane vouches that an agent runs a known codebase and
configuration by signing an attestation with its Ed25519 key:

  iatp attest hash DIR                         the codebase hash of a directory
  iatp attest sign --key cp.key --key-id ID …  print a signed attestation
  iatp attest verify --trusted-key ID=cp.pub … RECORD.json

Attestations are version 2 by default (they bind the agent's own key and
sign every field); --v1 makes records the widely installed Python package
can verify.`,
		Args: exactArgs(0, "a subcommand (hash, sign or verify)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("attest needs a subcommand: hash, sign or verify")
		},
	}
	cmd.AddCommand(newAttestHashCmd(s), newAttestSignCmd(s), newAttestVerifyCmd(s))
	return cmd
}

func newAttestHashCmd(s *streams) *cobra.Command {
	var exclude []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "hash DIR",
		Short: "Print the deterministic tree hash (sha256:<hex>) of a directory",
		Long: `Print the deterministic hash of a directory tree: sorted paths, file
contents and executable bits, symlinks as their target text (never
followed). It does not depend on file order on disk, mtimes, owners or the
umask. Empty directories do not count (as in git); devices, sockets and
named pipes are an error unless excluded. --exclude NAME leaves out every
file or directory with that base name, for example --exclude .git.`,
		Args: exactArgs(1, "a directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return usagef("%s is not a directory", args[0])
			}
			h, err := identity.HashTree(args[0], identity.TreeHashOptions{Exclude: exclude})
			if err != nil {
				return failf("%v", err)
			}
			if asJSON {
				return json.NewEncoder(s.out).Encode(map[string]string{"dir": args[0], "codebase_hash": h})
			}
			fmt.Fprintln(s.out, h)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&exclude, "exclude", nil, "base name of files or directories to leave out (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"dir","codebase_hash"} as JSON`)
	return cmd
}

func newAttestSignCmd(s *streams) *cobra.Command {
	var keyFile, keyID, agentID, codebase, codebaseHash, config, configHash, agentKeyFile string
	var exclude []string
	var expiresIn time.Duration
	var v1, asJSON bool
	cmd := &cobra.Command{
		Use:   "sign --key FILE --key-id ID --agent-id A (--codebase DIR | --codebase-hash H) (--config FILE | --config-hash H) [--agent-key PUBFILE]",
		Short: "Sign an attestation and print it (JSON)",
		Long: `Sign an attestation for an agent with the control plane's private key and
print the record. Version 2 (the default) binds the agent's own public key
(--agent-key, required) and signs every field, expires_at included.
--v1 writes the widely installed Python package's format instead: it signs
only agent_id:codebase_hash:config_hash:timestamp, binds no key, and
verifiers accept it only while it is younger than their maximum age.`,
		Args: exactArgs(0, "flags only"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || keyID == "" || agentID == "" {
				return usagef("attest sign needs --key, --key-id and --agent-id")
			}
			if (codebase == "") == (codebaseHash == "") {
				return usagef("give exactly one of --codebase DIR and --codebase-hash H")
			}
			if (config == "") == (configHash == "") {
				return usagef("give exactly one of --config FILE and --config-hash H")
			}
			if v1 && agentKeyFile != "" {
				return usagef("--v1 records cannot bind --agent-key; drop one of them")
			}
			if !v1 && agentKeyFile == "" {
				return usagef("a v2 attestation needs --agent-key PUBFILE (the agent's public key), or use --v1")
			}
			if expiresIn <= 0 {
				return usagef("--expires-in must be positive")
			}
			key, err := identity.ReadPrivateKeyFile(keyFile)
			if err != nil {
				return usagef("%v", err)
			}
			claims := identity.Claims{AgentID: agentID, CodebaseHash: codebaseHash, ConfigHash: configHash}
			if codebase != "" {
				if fi, err := os.Stat(codebase); err != nil || !fi.IsDir() {
					return usagef("--codebase %s is not a directory", codebase)
				}
				if claims.CodebaseHash, err = identity.HashTree(codebase, identity.TreeHashOptions{Exclude: exclude}); err != nil {
					return failf("%v", err)
				}
			}
			if config != "" {
				if claims.ConfigHash, err = identity.HashFile(config); err != nil {
					return usagef("--config: %v", err)
				}
			}
			if agentKeyFile != "" {
				if claims.VerificationKey, err = identity.ReadPublicKeyFile(agentKeyFile); err != nil {
					return usagef("--agent-key: %v", err)
				}
			}
			opts := identity.AttestationOptions{TTL: expiresIn}
			if v1 {
				opts.Version = 1
			}
			a, err := identity.CreateAttestation(key, keyID, claims, opts)
			if err != nil {
				return usagef("%v", err)
			}
			if asJSON {
				return json.NewEncoder(s.out).Encode(a)
			}
			return encodeJSONIndent(s.out, a)
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "the control plane's private key file (mode 0600)")
	f.StringVar(&keyID, "key-id", "", "id verifiers know the control-plane key by (signing_key_id)")
	f.StringVar(&agentID, "agent-id", "", "the agent the attestation is for")
	f.StringVar(&codebase, "codebase", "", "directory to hash as the codebase (see iatp attest hash)")
	f.StringVar(&codebaseHash, "codebase-hash", "", "codebase hash, sha256:<hex>")
	f.StringVar(&config, "config", "", "configuration file to hash")
	f.StringVar(&configHash, "config-hash", "", "configuration hash, sha256:<hex>")
	f.StringVar(&agentKeyFile, "agent-key", "", "the agent's public key file (verification_key, v2)")
	f.DurationVar(&expiresIn, "expires-in", identity.DefaultAttestationTTL, "validity of the attestation")
	f.BoolVar(&v1, "v1", false, "write a v1 record (the widely installed Python package's format)")
	f.StringArrayVar(&exclude, "exclude", nil, "with --codebase: base names to leave out of the hash (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print the record as compact JSON on one line (the default is indented JSON)")
	return cmd
}

// attestVerifyResult is the --json output of iatp attest verify.
type attestVerifyResult struct {
	Valid        bool   `json:"valid"`
	Error        string `json:"error,omitempty"`
	AgentID      string `json:"agent_id,omitempty"`
	Version      int    `json:"signature_version,omitempty"`
	SigningKeyID string `json:"signing_key_id,omitempty"`
	CodebaseHash string `json:"codebase_hash,omitempty"`
	ConfigHash   string `json:"config_hash,omitempty"`
	AgentKey     string `json:"verification_key,omitempty"`
	IssuedAt     string `json:"timestamp,omitempty"`
	ExpiresAt    string `json:"expires_at,omitempty"`
}

func newAttestVerifyCmd(s *streams) *cobra.Command {
	var trusted []string
	var opts identity.ValidateOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --trusted-key ID=PUBFILE … [--expect-codebase-hash H] [--max-age 24h] RECORD.json",
		Short: "Verify an attestation against trusted control-plane keys",
		Long: `Verify an attestation record (v1 or v2) against the control-plane keys
given with --trusted-key ID=PUBFILE (repeatable; PUBFILE in raw base64,
ed25519:<base64> or PEM form).

Exit status: 0 valid; 1 invalid, with the reason (expired, not yet valid,
unknown signing key, bad signature, agent/codebase/config mismatch, v1
record older than --max-age); 2 on bad arguments or unreadable files.`,
		Args: exactArgs(1, "an attestation record (JSON file, - for stdin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseKeyRefFlags("--trusted-key", trusted)
			if err != nil {
				return err
			}
			v, err := identity.NewValidator(keys)
			if err != nil {
				return usagef("%v", err)
			}
			data, err := readFileOrStdin(s.in, args[0], identity.MaxAttestationBytes)
			if err != nil {
				return usagef("%v", err)
			}
			res := attestVerifyResult{}
			a, err := identity.DecodeAttestation(data)
			var ok identity.Validated
			if err == nil {
				ok, err = v.Validate(a, opts)
			}
			if err != nil {
				res.Error = err.Error()
			} else {
				res = attestVerifyResult{
					Valid: true, AgentID: ok.AgentID, Version: ok.Version, SigningKeyID: ok.SigningKeyID,
					CodebaseHash: ok.CodebaseHash, ConfigHash: ok.ConfigHash, AgentKey: identity.FormatPublicKey(ok.VerificationKey),
					IssuedAt: a.Timestamp, ExpiresAt: a.ExpiresAt,
				}
			}
			if asJSON {
				if err := encodeJSONIndent(s.out, res); err != nil {
					return err
				}
				if !res.Valid {
					return silentFail
				}
				return nil
			}
			if !res.Valid {
				return failf("%s", res.Error)
			}
			fmt.Fprintf(s.out, "✓ Valid v%d attestation for agent %s\n", res.Version, res.AgentID)
			fmt.Fprintf(s.out, "  Signed by:      %s\n", res.SigningKeyID)
			fmt.Fprintf(s.out, "  Codebase hash:  %s\n", res.CodebaseHash)
			fmt.Fprintf(s.out, "  Config hash:    %s\n", res.ConfigHash)
			if res.AgentKey != "" {
				fmt.Fprintf(s.out, "  Agent key:      %s\n", res.AgentKey)
			}
			fmt.Fprintf(s.out, "  Signed at:      %s\n", res.IssuedAt)
			if res.Version == 1 {
				maxAge := opts.MaxAge
				if maxAge <= 0 {
					maxAge = identity.DefaultMaxAttestationAge
				}
				fmt.Fprintf(s.out, "  Accepted until: %s (v1: max age %s; its expires_at %s is not signed)\n",
					ok.IssuedAt.Add(maxAge).UTC().Format(time.RFC3339), maxAge, res.ExpiresAt)
				fmt.Fprintf(s.out, "  Note: a v1 record binds no agent key; anyone holding a copy can present it.\n")
			} else {
				fmt.Fprintf(s.out, "  Expires at:     %s\n", res.ExpiresAt)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&trusted, "trusted-key", nil, "trusted control-plane key as ID=PUBFILE (repeatable, at least one)")
	f.StringVar(&opts.AgentID, "expect-agent-id", "", "refuse the record unless it is for this agent")
	f.StringVar(&opts.CodebaseHash, "expect-codebase-hash", "", "refuse the record unless it attests this codebase hash")
	f.StringVar(&opts.ConfigHash, "expect-config-hash", "", "refuse the record unless it attests this config hash")
	f.DurationVar(&opts.MaxAge, "max-age", identity.DefaultMaxAttestationAge, "refuse v1 records signed longer ago than this")
	f.BoolVar(&opts.RequireV2, "require-v2", false, "refuse v1 records")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// parseKeyRefFlags reads flag values of the form ID=PUBFILE into a key map.
func parseKeyRefFlags(flag string, refs []string) (map[string]ed25519.PublicKey, error) {
	if len(refs) == 0 {
		return nil, usagef("give at least one %s ID=PUBFILE", flag)
	}
	keys := make(map[string]ed25519.PublicKey, len(refs))
	for _, ref := range refs {
		id, path, ok := strings.Cut(ref, "=")
		if !ok || id == "" || path == "" {
			return nil, usagef("%s %q: want ID=PUBFILE", flag, ref)
		}
		if _, dup := keys[id]; dup {
			return nil, usagef("%s: key id %q given twice", flag, id)
		}
		pub, err := identity.ReadPublicKeyFile(path)
		if err != nil {
			return nil, usagef("%s %s: %v", flag, id, err)
		}
		keys[id] = pub
	}
	return keys, nil
}

// readFileOrStdin reads a whole file, or stdin for "-", refusing more than limit
// bytes.
func readFileOrStdin(stdin io.Reader, path string, limit int64) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := wire.ReadAll(r, limit)
	if errors.Is(err, wire.ErrTooLarge) {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, err
}

// encodeJSONIndent prints v indented, without HTML escaping.
func encodeJSONIndent(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
