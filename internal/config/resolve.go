package config

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/sidecar"
)

// DefaultDataDir is the data directory when none is configured (iatp
// sidecar --data-dir, data_dir in the file); iatp audit reads the same.
const DefaultDataDir = "./iatp-data"

// Flags are the command-line flags of iatp sidecar; empty values were not given.
type Flags struct {
	AgentURL, Listen, Manifest, DataDir string
	// EgressListen is --egress-listen: an address, or "off".
	EgressListen     string
	Key, Attestation string
	// TrustedAgents and ControlPlaneKeys are ID=PUBFILE pairs; they add to,
	// and replace by id, those of the file.
	TrustedAgents, ControlPlaneKeys []string
	// RequireAuthenticatedCallers, when set, beats the file.
	RequireAuthenticatedCallers *bool
	RecorderRecover             bool
	// Pprof (--pprof) is ORed with server.pprof.
	Pprof bool
	// Peers (--peer) add to reputation.peers; NATSURL (--nats-url) beats
	// reputation.nats.url.
	Peers   []string
	NATSURL string
}

// Source says where the resolved settings came from, for the start-up log.
type Source struct {
	Manifest string // a path, or "environment (IATP_AGENT_ID …)"
	// Warnings are settings that were accepted but deserve the operator's
	// attention, for the start-up log.
	Warnings []string
}

// Resolve merges the file (may be nil; relative paths in it are taken from
// configDir), the environment (getenv) and the flags — flags beat the
// environment, which beats the file — and returns the sidecar's
// configuration. Every problem is reported, naming its source.
func Resolve(file *File, configDir string, getenv func(string) string, flags Flags) (sidecar.Config, Source, error) {
	if file == nil {
		file = &File{}
	}
	var (
		cfg  sidecar.Config
		src  Source
		errs []error
	)
	bad := func(err error) { errs = append(errs, err) }
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) || configDir == "" {
			return p
		}
		return filepath.Join(configDir, p)
	}

	cfg.AgentURL = first(flags.AgentURL, getenv("IATP_AGENT_URL"), file.AgentURL)
	switch {
	case flags.AgentURL != "":
		checkAgentURL("--agent-url", cfg.AgentURL, bad)
	case getenv("IATP_AGENT_URL") != "":
		checkAgentURL("IATP_AGENT_URL", cfg.AgentURL, bad)
	case file.AgentURL != "":
		checkAgentURL("agent_url", cfg.AgentURL, bad)
	default:
		bad(errors.New("no agent URL: give --agent-url URL (the agent to protect, such as http://127.0.0.1:8000), set IATP_AGENT_URL, or set agent_url: in the config file"))
	}
	cfg.Listen = first(file.Listen, sidecar.DefaultListen)
	if file.Listen != "" {
		checkListen("listen", file.Listen, bad)
	}
	if p := getenv("IATP_PORT"); p != "" {
		port, err := parsePort(p)
		if err != nil {
			bad(err)
		} else {
			host, _, err := net.SplitHostPort(cfg.Listen)
			if err != nil {
				host = "127.0.0.1"
			}
			cfg.Listen = net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	if flags.Listen != "" {
		cfg.Listen = flags.Listen
		checkListen("--listen", flags.Listen, bad)
	}
	cfg.DataDir = first(flags.DataDir, file.DataDir, DefaultDataDir)

	// The manifest: --manifest, else the environment, else the file's.
	switch {
	case flags.Manifest != "":
		src.Manifest = flags.Manifest
		cfg.Manifest = loadManifest(flags.Manifest, bad)
	case getenv("IATP_AGENT_ID") != "":
		src.Manifest = "environment (IATP_AGENT_ID and friends)"
		m, err := ManifestFromEnv(getenv)
		if err != nil {
			bad(err)
		}
		cfg.Manifest = m
		if getenv("IATP_RETENTION") == "" {
			src.Warnings = append(src.Warnings, "IATP_RETENTION is not set: the agent is taken to keep data permanently (cards are blocked, every call warns); set it to ephemeral, temporary or permanent")
		}
	case file.Manifest != "":
		src.Manifest = rel(file.Manifest)
		cfg.Manifest = loadManifest(rel(file.Manifest), bad)
	default:
		bad(errors.New("no manifest: give --manifest FILE, set IATP_AGENT_ID (and IATP_TRUST_LEVEL, IATP_RETENTION …), or set manifest: in the config file"))
	}

	cfg.OverrideToken = secret("IATP_TRUSTED_USER_OVERRIDE_TOKEN", getenv, file.OverrideToken, rel(file.OverrideTokenFile), "override_token_file", bad)
	cfg.AdminToken = secret("IATP_ADMIN_TOKEN", getenv, file.AdminToken, rel(file.AdminTokenFile), "admin_token_file", bad)

	cfg.AgentTimeout = file.AgentTimeout
	cfg.StreamTimeout = file.StreamTimeout
	cfg.MaxBodyBytes = file.MaxBodyBytes
	cfg.MaxJSONDepth = file.MaxJSONDepth
	cfg.RedactForwarded = file.RedactForwarded
	cfg.PublicTraces = file.PublicTraces
	cfg.RateLimitPerMinute = file.RateLimit.RequestsPerMinute
	cfg.RateLimitBurst = file.RateLimit.Burst
	cfg.Policy = file.Policy
	if _, err := policy.New(file.Policy); err != nil {
		bad(err) // checked here too, to be reported with the rest
	}

	r := file.Recorder
	switch r.Sync {
	case "", string(recorder.SyncBatch), string(recorder.SyncAlways):
	default:
		bad(fmt.Errorf("recorder.sync: %q is not batch or always", r.Sync))
	}
	switch r.Compression {
	case "", string(recorder.CompressionZstd), string(recorder.CompressionNone):
	default:
		bad(fmt.Errorf("recorder.compression: %q is not zstd or none", r.Compression))
	}
	cfg.Recorder = recorder.Config{
		Sync: recorder.SyncMode(r.Sync), SyncInterval: r.SyncInterval, SegmentBytes: r.SegmentBytes,
		MaxAge: r.MaxAge, MaxTotalBytes: r.MaxTotalBytes, CheckpointEvery: r.CheckpointEvery,
		Recover: r.Recover || flags.RecorderRecover, Compression: recorder.Compression(r.Compression),
	}
	cfg.MaxRecordPayload = r.MaxPayloadBytes
	cfg.MaxResponseRecord = r.MaxResponseBytes

	s := file.Server
	cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.IdleTimeout, cfg.ShutdownTimeout = s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout, s.ShutdownTimeout
	cfg.MaxHeaderBytes, cfg.MaxConnsPerAgent, cfg.MaxConnections = s.MaxHeaderBytes, s.MaxConnsPerAgent, s.MaxConnections
	cfg.Pprof = s.Pprof || flags.Pprof

	id := file.Identity
	if path := first(flags.Key, rel(id.Key)); path != "" {
		k, err := identity.ReadPrivateKeyFile(path)
		if err != nil {
			bad(fmt.Errorf("key: %w", err))
		}
		cfg.Key = k
	}
	cfg.KeyID = id.KeyID
	if path := first(flags.Attestation, rel(id.Attestation)); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			bad(fmt.Errorf("attestation: %w", err))
		} else if a, err := identity.DecodeAttestation(data); err != nil {
			bad(fmt.Errorf("attestation %s: %w", path, err))
		} else {
			cfg.Attestation = a
		}
	}
	cfg.TrustedAgents = keyMap("identity.trusted_agents", "--trusted-agent", id.TrustedAgents, flags.TrustedAgents, rel, bad)
	cfg.ControlPlaneKeys = keyMap("identity.control_plane_keys", "--control-plane-key", id.ControlPlaneKeys, flags.ControlPlaneKeys, rel, bad)
	cfg.RequireAuthenticatedCallers = id.RequireAuthenticatedCallers
	if flags.RequireAuthenticatedCallers != nil {
		cfg.RequireAuthenticatedCallers = *flags.RequireAuthenticatedCallers
	}
	cfg.PublicURL = id.PublicURL
	cfg.MaxClockSkew = id.MaxClockSkew
	cfg.MaxAttestationAge = id.MaxAttestationAge
	cfg.ManifestMaxAge = file.ManifestMaxAge

	e := file.Egress
	cfg.EgressListen = first(flags.EgressListen, e.Listen, sidecar.DefaultEgressListen)
	switch {
	case cfg.EgressListen == "off":
		cfg.EgressListen = ""
	case flags.EgressListen != "":
		checkListen("--egress-listen", cfg.EgressListen, bad)
	case e.Listen != "":
		checkListen("egress.listen", cfg.EgressListen, bad)
	}
	cfg.Egress = sidecar.EgressConfig{
		Policy: e.Policy, Targets: e.Targets, RequireSignedManifests: e.RequireSignedManifests, AllowConnect: e.AllowConnect,
		ProxyToken:   secret("IATP_EGRESS_TOKEN", getenv, e.ProxyToken, rel(e.ProxyTokenFile), "egress.proxy_token_file", bad),
		DiscoveryTTL: e.DiscoveryTTL, NegativeTTL: e.NegativeTTL, FetchTimeout: e.FetchTimeout, MaxTargets: e.MaxTargets,
		Timeout: e.Timeout,
	}
	if _, err := policy.New(e.Policy); err != nil {
		bad(fmt.Errorf("egress.%w", err))
	}
	if err := client.CheckRules(e.Targets); err != nil {
		bad(fmt.Errorf("egress.%w", err))
	}

	rep := file.Reputation
	if err := rep.Validate(); err != nil {
		bad(err)
	}
	cfg.Reputation = sidecar.ReputationConfig{
		Settings:    rep,
		Verifiers:   keyMap("reputation.verifiers", "", rep.Verifiers, nil, rel, bad),
		Peers:       append(slices.Clone(rep.Peers), flags.Peers...),
		NATSURL:     first(flags.NATSURL, rep.NATS.URL),
		AntiEntropy: rep.AntiEntropyInterval,
	}
	for _, p := range cfg.Reputation.Peers {
		checkAgentURL("reputation peer", p, bad)
	}

	if len(errs) > 0 {
		return sidecar.Config{}, src, errors.Join(errs...)
	}
	return cfg, src, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func loadManifest(path string, bad func(error)) *manifest.Manifest {
	m, err := manifest.ParseFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		bad(fmt.Errorf("manifest: %w (check the path: --manifest is relative to the working directory, manifest: in the file to the file's directory)", err))
	case err != nil:
		bad(fmt.Errorf("manifest: %w (iatp verify %s shows every finding)", err, path))
	}
	return m
}

// checkAgentURL reports an agent URL that is not an absolute http(s) URL,
// suggesting the fix for the usual slip (a missing scheme).
func checkAgentURL(src, raw string, bad func(error)) {
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return
	}
	if !strings.Contains(raw, "://") {
		bad(fmt.Errorf("%s %q is not an absolute http:// or https:// URL: did you mean http://%s?", src, raw, raw))
		return
	}
	bad(fmt.Errorf("%s %q is not an absolute http:// or https:// URL, such as http://127.0.0.1:8000", src, raw))
}

// checkListen reports a listen address that is not host:port with a
// numeric port, suggesting the two usual meanings of a bare port.
func checkListen(src, addr string, bad func(error)) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if n, err := strconv.Atoi(addr); err == nil && n >= 0 && n <= 65535 {
			bad(fmt.Errorf("%s %q has no host: did you mean 127.0.0.1:%s (this machine only) or :%s (every interface)?", src, addr, addr, addr))
			return
		}
		bad(fmt.Errorf("%s %q is not host:port: write, for example, 127.0.0.1:8001 (this machine only) or :8001 (every interface)", src, addr))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad(fmt.Errorf("%s %q: the port must be a number from 1 to 65535", src, addr))
	}
}

// secret returns the environment variable's value, else the file's inline
// value, else the contents of the named file.
func secret(env string, getenv func(string) string, inline, path, key string, bad func(error)) string {
	if v := getenv(env); v != "" {
		return v
	}
	if inline != "" {
		return inline
	}
	if path == "" {
		return ""
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		bad(fmt.Errorf("%s: %s is accessible to group or other users (mode %#o); fix it with: chmod 600 %s", key, path, fi.Mode().Perm(), path))
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		bad(fmt.Errorf("%s: %w", key, err))
		return ""
	}
	return strings.TrimSpace(string(b))
}

// keyMap merges agent-id → key settings from the file and ID=PUBFILE flags.
func keyMap(fileKey, flag string, fromFile map[string]string, fromFlags []string, rel func(string) string, bad func(error)) map[string]ed25519.PublicKey {
	if len(fromFile) == 0 && len(fromFlags) == 0 {
		return nil
	}
	out := make(map[string]ed25519.PublicKey)
	for id, v := range fromFile {
		pub, err := publicKey(v, rel)
		if err != nil {
			bad(fmt.Errorf("%s.%s: %w", fileKey, id, err))
			continue
		}
		out[id] = pub
	}
	for _, pair := range fromFlags {
		id, path, ok := strings.Cut(pair, "=")
		if !ok || id == "" || path == "" {
			bad(fmt.Errorf("%s %q: want ID=PUBFILE", flag, pair))
			continue
		}
		pub, err := identity.ReadPublicKeyFile(path)
		if err != nil {
			bad(fmt.Errorf("%s %s: %w", flag, id, err))
			continue
		}
		out[id] = pub
	}
	return out
}

// publicKey reads a key given inline or as a file path.
func publicKey(v string, rel func(string) string) (ed25519.PublicKey, error) {
	if pub, err := identity.ParsePublicKey(v); err == nil {
		return pub, nil
	}
	return identity.ReadPublicKeyFile(rel(v))
}

// ManifestFromEnv builds a manifest from the Python sidecar's environment
// variables: IATP_AGENT_ID (required), IATP_TRUST_LEVEL (default standard),
// IATP_REVERSIBILITY (default none), IATP_RETENTION (default permanent, the
// safe assumption), IATP_HUMAN_IN_LOOP and IATP_TRAINING_CONSENT (default
// false). It is validated like a manifest file.
func ManifestFromEnv(getenv func(string) string) (*manifest.Manifest, error) {
	var errs []error
	human, err := parseBool("IATP_HUMAN_IN_LOOP", getenv("IATP_HUMAN_IN_LOOP"))
	if err != nil {
		errs = append(errs, err)
	}
	training, err := parseBool("IATP_TRAINING_CONSENT", getenv("IATP_TRAINING_CONSENT"))
	if err != nil {
		errs = append(errs, err)
	}
	doc := map[string]any{
		"protocol_version": manifest.DefaultProtocolVersion,
		"identity":         map[string]any{"agent_id": getenv("IATP_AGENT_ID")},
		"trust_level":      first(getenv("IATP_TRUST_LEVEL"), string(manifest.Standard)),
		"reversibility":    map[string]any{"level": first(getenv("IATP_REVERSIBILITY"), string(manifest.ReversibilityNone))},
		"privacy": map[string]any{
			"retention_policy": first(getenv("IATP_RETENTION"), string(manifest.RetentionPermanent)),
			"human_in_loop":    human, "training_consent": training,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		errs = append(errs, fmt.Errorf("manifest from the environment: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}
