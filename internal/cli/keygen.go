package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/identity"
)

// keygenResult is the --json output of iatp keygen.
type keygenResult struct {
	PrivateKeyFile string `json:"private_key_file"`
	PublicKeyFile  string `json:"public_key_file"`
	PublicKey      string `json:"public_key"`
}

func newKeygenCmd(s *streams) *cobra.Command {
	var out, name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keygen [--out DIR] [--name NAME]",
		Short: "Create an Ed25519 key pair for an agent or a control plane",
		Long: `Create an Ed25519 key pair: NAME.key, the private key (PEM PKCS#8, mode
0600), and NAME.pub, the public key on one line ("ed25519:<base64>").

Existing files are never overwritten. Exit status: 0 when written, 1 when a
file already exists or cannot be written, 2 on bad arguments.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
				return usagef("--out %s is not a directory", out)
			}
			key, err := identity.GenerateKey(nil)
			if err != nil {
				return failf("%v", err)
			}
			keyPath, pubPath, err := identity.WriteKeyPair(out, name, key)
			switch {
			case errors.Is(err, identity.ErrMalformed):
				return usagef("--name: %v", err)
			case errors.Is(err, fs.ErrExist):
				return failf("%v; choose another --name or --out, nothing was written", err)
			case err != nil:
				return failf("%v", err)
			}
			res := keygenResult{PrivateKeyFile: keyPath, PublicKeyFile: pubPath, PublicKey: identity.FormatPublicKey(key.PublicKey())}
			if asJSON {
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(s.out, "Wrote private key %s (mode 0600: keep it secret)\n", keyPath)
			fmt.Fprintf(s.out, "Wrote public key  %s\n", pubPath)
			fmt.Fprintf(s.out, "Public key: %s\n", res.PublicKey)
			fmt.Fprintf(s.out, "\nNext: put the public key in the agent's manifest (identity.verification_key),\n"+
				"or sign attestations with the private key: iatp attest sign --key %s …\n", keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", ".", "directory to write the key files to")
	cmd.Flags().StringVar(&name, "name", "iatp", "base name of the key files (NAME.key, NAME.pub)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"private_key_file","public_key_file","public_key"} as JSON`)
	return cmd
}
