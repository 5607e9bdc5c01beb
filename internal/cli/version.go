package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the iatp release. Release builds override it with
// -ldflags "-X github.com/iatp/iatp/internal/cli.Version=v1.2.3".
var Version = "v0.1.0-dev"

func newVersionCmd(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the iatp version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version()
			if asJSON {
				enc := json.NewEncoder(s.out)
				return enc.Encode(map[string]string{"name": "iatp", "version": v, "go": runtime.Version()})
			}
			fmt.Fprintf(s.out, "iatp %s (%s)\n", v, runtime.Version())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {\"name\",\"version\",\"go\"} as JSON")
	return cmd
}

// version returns Version, or the module version when built with "go install".
func version() string {
	if Version != "v0.1.0-dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
