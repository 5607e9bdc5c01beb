package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/sidecar"
)

func newSidecarCmd(s *streams) *cobra.Command {
	var (
		flags       config.Flags
		configPath  string
		logFormat   string
		logLevel    string
		requireAuth bool
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Protect an agent: decide, scrub, record and forward every call to it",
		Long: `Run the iatp sidecar in front of one agent.

It serves the agent's manifest at /.well-known/agent-manifest and the
protected call at POST /proxy: every request is checked against the agent's
manifest and the operator's policy, scrubbed of sensitive data in what is
recorded, written to the flight recorder (DATA_DIR/recorder), and forwarded
only when allowed.

Settings come from flags, then the environment (IATP_AGENT_URL, IATP_PORT,
IATP_AGENT_ID, IATP_TRUST_LEVEL, IATP_REVERSIBILITY, IATP_RETENTION,
IATP_HUMAN_IN_LOOP, IATP_TRAINING_CONSENT, IATP_TRUSTED_USER_OVERRIDE_TOKEN,
IATP_ADMIN_TOKEN), then the --config file; docs/configuration.md lists every
key. SIGINT or SIGTERM stops it gracefully.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationJSON: "log"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				if cmd.Flags().Changed("log-format") && logFormat != "json" {
					return usagef("--json logs as JSON, but --log-format says %s: drop one of them", logFormat)
				}
				logFormat = "json"
			}
			sink := newLogSink(s.err)
			defer sink.Close()
			logger, err := newLogger(sink, logFormat, logLevel)
			if err != nil {
				return usagef("%v", err)
			}
			if cmd.Flags().Changed("require-authenticated-callers") {
				flags.RequireAuthenticatedCallers = &requireAuth
			}
			cfg, src, err := loadSidecarConfig(configPath, os.Getenv, flags)
			if err != nil {
				return logStartFailure(logger, logFormat == "json", err)
			}
			for _, w := range src.Warnings {
				logger.Warn(w)
			}
			cfg.Logger = logger
			tp, shutdownTracing, err := sidecar.TracerProviderFromEnv(cmd.Context(), "iatp-sidecar")
			if err != nil {
				return logStartFailure(logger, logFormat == "json", failf("%v: check the OTEL_EXPORTER_OTLP_* variables", err))
			}
			defer func() { _ = shutdownTracing(context.Background()) }()
			cfg.TracerProvider = tp
			sc, err := sidecar.New(cfg)
			if err != nil {
				return logStartFailure(logger, logFormat == "json", failf("%v", explainStartError(err, cfg)))
			}
			logger.Info("protecting agent", "agent_id", sc.Manifest().AgentID(), "manifest", src.Manifest, "data_dir", cfg.DataDir)
			warnIfAgentUnreachable(cmd.Context(), logger, cfg.AgentURL)
			if err := sc.Run(cmd.Context()); err != nil {
				return logStartFailure(logger, logFormat == "json", failf("%v", explainServeError(err, cfg.Listen)))
			}
			logger.Info("iatp sidecar stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.AgentURL, "agent-url", "", "the protected agent's URL (env IATP_AGENT_URL)")
	f.StringVar(&flags.Listen, "listen", "", "address to listen on (default "+sidecar.DefaultListen+"; env IATP_PORT sets the port)")
	f.BoolVar(&flags.Pprof, "pprof", false, "serve Go's profiles at /debug/pprof/ (admin token required)")
	f.StringArrayVar(&flags.Peers, "peer", nil, "URL of a sidecar to exchange reputation events with over HTTP (repeatable; adds to reputation.peers)")
	f.StringVar(&flags.NATSURL, "nats-url", "", "NATS server(s) to spread reputation events over JetStream (reputation.nats.url)")
	f.StringVar(&flags.EgressListen, "egress-listen", "", "address of the egress proxy the agent calls others through (HTTP_PROXY; default "+sidecar.DefaultEgressListen+"; off turns it off)")
	f.StringVar(&flags.Manifest, "manifest", "", "the agent's manifest, JSON or YAML, either shape")
	f.StringVar(&configPath, "config", "", "YAML configuration file (policy, limits, tokens, recorder, identity)")
	f.StringVar(&flags.DataDir, "data-dir", "", "directory for the sidecar's state (default "+config.DefaultDataDir+")")
	f.StringVar(&flags.Key, "key", "", "the sidecar's private key (from iatp keygen): signs the manifest and the recorder's checkpoints")
	f.StringVar(&flags.Attestation, "attestation", "", "the agent's attestation record (from iatp attest sign)")
	f.StringArrayVar(&flags.TrustedAgents, "trusted-agent", nil, "ID=PUBFILE: a caller agent and its public key (repeatable)")
	f.StringArrayVar(&flags.ControlPlaneKeys, "control-plane-key", nil, "ID=PUBFILE: a control-plane key whose attestations are accepted (repeatable)")
	f.BoolVar(&requireAuth, "require-authenticated-callers", false, "refuse unsigned requests with 401")
	f.BoolVar(&flags.RecorderRecover, "recorder-recover", false, "start a new recorder chain when the existing log fails verification (the old files are kept aside)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&asJSON, "json", false, "log as JSON, start-up errors included (same as --log-format json)")
	return cmd
}

// newLogger builds the structured logger the sidecar logs to (stderr,
// through a logSink).
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
