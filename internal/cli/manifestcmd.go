package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
)

func newManifestCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest sign|verify",
		Short: "Sign a capability manifest, verify a signed manifest document",
		Long: `Manifest signatures are detached JWS (RFC 7515, EdDSA) over the RFC 8785
canonical JSON of the served document without its "signatures" member.
Several may stand side by side, for key rotation.

  iatp manifest sign --key agent.key --key-id ID MANIFEST > signed.json
  iatp manifest verify --key ID=agent.pub signed.json`,
		Args: exactArgs(0, "a subcommand (sign or verify)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("manifest needs a subcommand: sign or verify")
		},
	}
	cmd.AddCommand(newManifestSignCmd(s), newManifestVerifyCmd(s))
	return cmd
}

func newManifestSignCmd(s *streams) *cobra.Command {
	var keyFile, keyID string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sign --key FILE --key-id ID MANIFEST",
		Short: "Print the served document of a manifest, signed",
		Long: `Read a manifest (JSON or YAML, either shape), build the document a sidecar
serves at /.well-known/agent-manifest, sign it with the private key and
print the signed document. A signature already there under the same key id
is replaced; others are kept.`,
		Args:              exactArgs(1, "a manifest file"),
		ValidArgsFunction: manifestFileCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" || keyID == "" {
				return usagef("manifest sign needs --key and --key-id")
			}
			key, err := identity.ReadPrivateKeyFile(keyFile)
			if err != nil {
				return usagef("%v", err)
			}
			m, err := manifest.ParseFile(args[0])
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
					return usagef("cannot read manifest: %v", err)
				}
				return failf("%v (see iatp verify %s)", err, args[0])
			}
			doc, err := m.Document()
			if err != nil {
				return failf("build document: %v", err)
			}
			signed, err := identity.SignManifest(doc, key, keyID)
			if err != nil {
				return failf("%v", err)
			}
			if asJSON {
				_, err = s.out.Write(append(signed, '\n'))
				return err
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, signed, "", "  "); err != nil {
				return failf("format document: %v", err)
			}
			pretty.WriteByte('\n')
			_, err = s.out.Write(pretty.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the private key file (mode 0600)")
	cmd.Flags().StringVar(&keyID, "key-id", "", "the key id verifiers know the key by (JWS kid)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the signed document as compact JSON on one line (the default is indented)")
	return cmd
}

// manifestVerifyResult is the --json output of iatp manifest verify.
type manifestVerifyResult struct {
	Valid    bool     `json:"valid"`
	Error    string   `json:"error,omitempty"`
	Verified []string `json:"verified_kids"`
}

func newManifestVerifyCmd(s *streams) *cobra.Command {
	var refs []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --key ID=PUBFILE … SIGNED.json",
		Short: "Check the signatures of a signed manifest document",
		Long: `Check the signatures of a signed manifest document (JSON, as served or as
printed by iatp manifest sign) against the keys given with --key ID=PUBFILE
(repeatable). Signatures by key ids not given are skipped.

Exit status: 0 when at least one signature by a given key verifies and no
entry is malformed or fails; 1 otherwise, naming the problem; 2 on bad
arguments or unreadable files.`,
		Args: exactArgs(1, "a signed manifest document (JSON file, - for stdin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseKeyRefFlags("--key", refs)
			if err != nil {
				return err
			}
			doc, err := readFileOrStdin(s.in, args[0], identity.MaxManifestBytes)
			if err != nil {
				return usagef("%v", err)
			}
			res := manifestVerifyResult{Verified: []string{}}
			kids, err := identity.VerifyManifest(doc, identity.KeyResolver(keys))
			if err != nil {
				res.Error = err.Error()
			} else {
				res.Valid, res.Verified = true, kids
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
			fmt.Fprintf(s.out, "✓ Signed manifest: verified by %s (%s)\n", plural(len(kids), "key"), joinQuoted(kids))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&refs, "key", nil, "a signer's public key as ID=PUBFILE (repeatable, at least one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func joinQuoted(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", s)
	}
	return b.String()
}
