// Command quickstart protects an agent with an embedded iatp sidecar: the Go
// counterpart of the Python package's
// create_sidecar(agent_url, manifest, port).run().
//
//	go run ./examples/quickstart http://127.0.0.1:8000
package main

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	agentURL := "http://127.0.0.1:8000"
	if len(os.Args) > 1 {
		agentURL = os.Args[1]
	}
	if err := run(ctx, agentURL, "127.0.0.1:8001", "./iatp-data"); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, agentURL, listen, dataDir string) error {
	m, err := manifest.Parse([]byte(`{"agent_id": "my-agent", "trust_level": "standard",
		"capabilities": {"idempotency": true, "reversibility": "partial"},
		"privacy_contract": {"retention": "ephemeral"}}`))
	if err != nil {
		return err
	}
	sc, err := sidecar.New(sidecar.Config{AgentURL: agentURL, Manifest: m, Listen: listen, DataDir: dataDir})
	if err != nil {
		return err
	}
	return sc.Run(ctx) // POST http://127.0.0.1:8001/proxy now reaches the agent, checked and recorded
}
