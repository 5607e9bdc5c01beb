// Package config loads the configuration of iatp sidecar from its three
// sources — the YAML file, the environment and the command-line flags, in
// increasing precedence — validates it and turns it into a sidecar.Config.
//
// docs/configuration.md is the reference of every key; keep the two in step.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/reputation"
)

// MaxFileSize bounds the configuration file.
const MaxFileSize = 1 << 20

// File is the YAML configuration file. Every field is optional; zero values
// mean the defaults documented in docs/configuration.md.
type File struct {
	AgentURL        string        `yaml:"agent_url"`
	Listen          string        `yaml:"listen"`
	Manifest        string        `yaml:"manifest"` // path, relative to the config file
	DataDir         string        `yaml:"data_dir"` // relative to the working directory
	AgentTimeout    time.Duration `yaml:"agent_timeout"`
	StreamTimeout   time.Duration `yaml:"stream_timeout"`
	MaxBodyBytes    int64         `yaml:"max_body_bytes"`
	MaxJSONDepth    int           `yaml:"max_json_depth"`
	RedactForwarded bool          `yaml:"redact_forwarded"`
	PublicTraces    bool          `yaml:"public_traces"`

	// OverrideToken and AdminToken may be given inline or, better, read from
	// a file (OverrideTokenFile, AdminTokenFile); the environment beats both.
	OverrideToken     string `yaml:"override_token"`
	OverrideTokenFile string `yaml:"override_token_file"`
	AdminToken        string `yaml:"admin_token"`
	AdminTokenFile    string `yaml:"admin_token_file"`

	// ManifestMaxAge is how long callers may use the served manifest before
	// they revalidate it (Cache-Control: max-age).
	ManifestMaxAge time.Duration `yaml:"manifest_max_age"`

	RateLimit RateLimit     `yaml:"rate_limit"`
	Policy    policy.Config `yaml:"policy"`
	Recorder  Recorder      `yaml:"recorder"`
	Server    Server        `yaml:"server"`
	Identity  Identity      `yaml:"identity"`
	Egress    Egress        `yaml:"egress"`
	// Reputation is the reputation node: who may slash, its peers, NATS,
	// and the mesh's parameters (docs/reputation.md).
	Reputation reputation.Settings `yaml:"reputation"`
}

// Egress configures the egress proxy, through which the agent calls other
// agents (PROTOCOL §0).
type Egress struct {
	// Listen is the proxy's address; "off" turns egress off.
	Listen string `yaml:"listen"`
	// ProxyToken (or ProxyTokenFile; IATP_EGRESS_TOKEN beats both) must be
	// sent by the agent as Proxy-Authorization: Bearer.
	ProxyToken     string `yaml:"proxy_token"`
	ProxyTokenFile string `yaml:"proxy_token_file"`
	// AllowConnect lets CONNECT (https://) targets through after the
	// handshake, uninspected.
	AllowConnect bool `yaml:"allow_connect"`
	// RequireSignedManifests makes targets without a manifest signature
	// by a pinned or attested key count as unknown.
	RequireSignedManifests bool `yaml:"require_signed_manifests"`
	// DiscoveryTTL, NegativeTTL, FetchTimeout and MaxTargets tune discovery.
	DiscoveryTTL time.Duration `yaml:"discovery_ttl"`
	NegativeTTL  time.Duration `yaml:"negative_ttl"`
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	MaxTargets   int           `yaml:"max_targets"`
	// Timeout bounds a call up to the target's answer.
	Timeout time.Duration `yaml:"timeout"`
	// Policy is the egress policy (same keys as policy).
	Policy policy.Config `yaml:"policy"`
	// Targets add requirements per target or path.
	Targets []client.TargetRule `yaml:"targets"`
}

// RateLimit is the per-caller rate limit.
type RateLimit struct {
	// RequestsPerMinute per caller; 0 means the manifest's
	// capabilities.rate_limit, -1 turns the limit off.
	RequestsPerMinute int `yaml:"requests_per_minute"`
	Burst             int `yaml:"burst"`
}

// Recorder configures the flight recorder.
type Recorder struct {
	Sync             string        `yaml:"sync"` // batch | always
	SyncInterval     time.Duration `yaml:"sync_interval"`
	SegmentBytes     int64         `yaml:"segment_bytes"`
	MaxAge           time.Duration `yaml:"max_age"`
	MaxTotalBytes    int64         `yaml:"max_total_bytes"`
	MaxPayloadBytes  int           `yaml:"max_payload_bytes"`
	MaxResponseBytes int           `yaml:"max_response_bytes"`
	CheckpointEvery  int           `yaml:"checkpoint_every"`
	Recover          bool          `yaml:"recover"`
	Compression      string        `yaml:"compression"` // zstd | none
}

// Server holds the limits of the sidecar's HTTP server and agent client.
type Server struct {
	// Pprof serves /debug/pprof/ behind the admin token (also --pprof).
	Pprof             bool          `yaml:"pprof"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxConnections    int           `yaml:"max_connections"`
	MaxConnsPerAgent  int           `yaml:"max_conns_per_agent"`
}

// Identity configures keys, attestations and caller authentication.
type Identity struct {
	Key         string `yaml:"key"` // private key file (PEM PKCS#8, mode 0600)
	KeyID       string `yaml:"key_id"`
	Attestation string `yaml:"attestation"` // attestation record file
	// TrustedAgents pins caller agent ids to public keys: each value is a
	// key ("ed25519:…", raw base64, PEM) or the path of a key file.
	TrustedAgents map[string]string `yaml:"trusted_agents"`
	// ControlPlaneKeys are the keys whose attestations are accepted, by key
	// id; values as for TrustedAgents.
	ControlPlaneKeys            map[string]string `yaml:"control_plane_keys"`
	RequireAuthenticatedCallers bool              `yaml:"require_authenticated_callers"`
	// PublicURL is the sidecar's URL as callers address it (scheme and
	// host), when a proxy in front of it changes them; signatures cover it.
	PublicURL         string        `yaml:"public_url"`
	MaxClockSkew      time.Duration `yaml:"max_clock_skew"`
	MaxAttestationAge time.Duration `yaml:"max_attestation_age"`
}

// Load reads and strictly decodes a configuration file: an unknown key is
// an error naming it, so a typo does not silently fall back to a default.
// As with Parse, a file with unknown keys or values of the wrong type is
// returned, partly decoded, together with the error.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := wire.ReadAll(f, MaxFileSize)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a configuration document; name is used in errors.
//
// Every unknown key and every value of the wrong type is reported, each as
// "NAME:LINE: problem (remedy)" — an unknown key with the nearest known key
// ("did you mean agent_timeout?") — joined with errors.Join. The file is
// then returned too, decoded except for those keys, so that a caller can
// report the problems of the rest of its configuration in the same run. On a
// YAML syntax error, which stops decoding, the file is nil.
func Parse(data []byte, name string) (*File, error) {
	var cfg File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return &cfg, nil // an empty file is the defaults
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return &cfg, explainTypeErrors(name, te)
		}
		return nil, explainSyntaxError(name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: holds more than one YAML document: remove every line \"---\" after the first document", name)
	}
	return &cfg, nil
}

// parseBool reads the boolean forms the Python package's environment
// variables use.
func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q is not a boolean (use true or false)", name, v)
}

func parsePort(v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("IATP_PORT=%q is not a port number (1–65535)", v)
	}
	return p, nil
}
