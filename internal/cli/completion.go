package cli

import "github.com/spf13/cobra"

// manifestFileCompletion completes a manifest argument with JSON and YAML
// files, for the shell completion scripts of iatp completion.
func manifestFileCompletion(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{"json", "yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}
