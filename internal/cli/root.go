// Package cli implements the iatp command line: one file per subcommand, each
// building its own cobra.Command with local flags.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0 // success
	exitFail  = 1 // the check ran and failed, or the operation failed
	exitUsage = 2 // bad flags or arguments, missing files
)

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failf reports a failed check or operation (exit 1).
func failf(format string, args ...any) error {
	return &exitError{code: exitFail, err: fmt.Errorf(format, args...)}
}

// usagef reports a usage problem (exit 2).
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// silentFail exits 1 without printing anything more: the command already
// wrote its own report (for example a --json document).
var silentFail = &exitError{code: exitFail, err: errors.New("")}

// streams are the standard streams a command writes to.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// newRootCmd builds the whole command tree.
func newRootCmd(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:               "iatp",
		Short:             "Inter-Agent Trust Protocol: a trust sidecar and control plane for AI agents",
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		newVersionCmd(s),
		newVerifyCmd(s),
		newScanCmd(s),
		newKeygenCmd(s), newAttestCmd(s), newManifestCmd(s),
		newAuditCmd(s),
		newSidecarCmd(s),
		newDemoCmd(s),
	)
	return root
}

// Main runs the command line with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := &streams{in: stdin, out: stdout, err: stderr}
	root := newRootCmd(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if msg := ee.Error(); msg != "" {
			fmt.Fprintf(stderr, "iatp: %s\n", msg)
		}
		return ee.code
	}
	// Errors from cobra itself (unknown command, bad arguments) are usage errors.
	fmt.Fprintf(stderr, "iatp: %s\n", err)
	return exitUsage
}
