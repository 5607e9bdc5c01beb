// Command iatp is the Inter-Agent Trust Protocol sidecar and control-plane CLI.
//
// Run "iatp demo" for the whole story on loopback, "iatp help" for the rest.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/iatp/iatp/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
