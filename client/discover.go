// Package client is the Go SDK for agents that call other agents: it runs
// the IATP handshake (PROTOCOL §0) in process — discover the target's
// manifest and proofs, validate them against local policy, then execute
// (signed as this agent) or warn or refuse — the same checks the sidecar's
// egress proxy runs, from package pipeline.
//
//	c, err := client.New(client.Config{AgentID: "planner", Key: key, ...})
//	httpClient := &http.Client{Transport: c.Transport()}
//
// Discover and Evaluate expose the first two phases alone, for tools such
// as `iatp handshake`.
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
)

// Defaults of DiscoveryConfig.
const (
	DefaultTTL          = time.Hour
	DefaultNegativeTTL  = 30 * time.Second
	DefaultFetchTimeout = 5 * time.Second
	DefaultMaxTargets   = 1024
	// MaxTTL caps a target's Cache-Control: max-age.
	MaxTTL = 24 * time.Hour
)

// Well-known paths of a sidecar (PROTOCOL §5).
const (
	ManifestPath    = "/.well-known/agent-manifest"
	AttestationPath = "/.well-known/agent-attestation"
)

// DiscoveryConfig configures a Discoverer. The zero value discovers with
// the defaults and proves nothing beyond what the target claims up to
// standard (no keys are trusted).
type DiscoveryConfig struct {
	// PinnedKeys pins agent ids to their manifest keys (trusted_agents): a
	// manifest signed by its pinned key proves "trusted".
	PinnedKeys map[string]ed25519.PublicKey
	// ControlPlaneKeys are the control-plane keys whose attestations prove
	// "verified_partner", by key id.
	ControlPlaneKeys map[string]ed25519.PublicKey
	// RequireSigned makes a target whose manifest carries no valid
	// signature by a known key count as unknown.
	RequireSigned bool
	// TTL is how long a verified manifest is used before it is
	// revalidated; a target's Cache-Control: max-age, when present, is used
	// instead (at most MaxTTL). 0 means DefaultTTL.
	TTL time.Duration
	// NegativeTTL is how long a target that could not be reached or
	// verified counts as unknown before it is tried again. 0 means
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// FetchTimeout bounds one discovery (manifest and attestation). 0 means
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxTargets bounds the cache of targets. 0 means DefaultMaxTargets.
	MaxTargets int
	// MaxAttestationAge bounds v1 attestations; 0 means identity's default.
	MaxAttestationAge time.Duration
	// HTTPClient fetches manifests; nil means a client with FetchTimeout
	// that does not follow redirects.
	HTTPClient *http.Client
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
}

// Target is what discovery established about a remote agent.
type Target struct {
	// Origin is the target's origin, "http://host:port".
	Origin string
	// Manifest is the target's manifest: as served when it validated, else
	// a stand-in with the levels of an unknown agent (see Proven).
	Manifest *manifest.Manifest
	// Claimed is the trust level the manifest claims.
	Claimed manifest.TrustLevel
	// Level is the claim capped by what is proven (PROTOCOL §2).
	Level manifest.TrustLevel
	// Proof says what the target proved.
	Proof identity.ManifestProof
	// Proven sums Proof up: "attested", "signed", "claimed" (nothing
	// proven), or why the target counts as unknown ("unreachable: …",
	// "invalid manifest: …", "unsigned, and signatures are required").
	Proven string
	// Problems lists what failed along the way, in words.
	Problems []string
	// Fetched is when the manifest was fetched or revalidated; Expires when
	// it must be revalidated.
	Fetched, Expires time.Time

	etag string
}

// Known reports whether the target's manifest was fetched and validated.
func (t *Target) Known() bool {
	return t.Proven == "attested" || t.Proven == "signed" || t.Proven == "claimed"
}

// PolicyTarget is the target as the policy engine scores it, with the
// reputation the mesh holds about it.
func (t *Target) PolicyTarget(rep policy.Reputation) policy.Target {
	return policy.Target{Manifest: t.Manifest, TrustLevel: t.Level, Reputation: rep}
}

// Discoverer finds, verifies and caches targets. It is safe for
// concurrent use; concurrent first calls to one origin share one fetch.
type Discoverer struct {
	cfg       DiscoveryConfig
	validator *identity.Validator
	client    *http.Client
	cache     *lru.Cache[string, *Target]
	flight    singleflight.Group
}

// NewDiscoverer checks cfg and returns a Discoverer.
func NewDiscoverer(cfg DiscoveryConfig) (*Discoverer, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MaxTargets == 0 {
		cfg.MaxTargets = DefaultMaxTargets
	}
	if cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.FetchTimeout < 0 || cfg.MaxTargets < 0 {
		return nil, errors.New("client: discovery durations and limits must not be negative")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	d := &Discoverer{cfg: cfg, client: cfg.HTTPClient}
	if len(cfg.ControlPlaneKeys) > 0 {
		v, err := identity.NewValidator(cfg.ControlPlaneKeys)
		if err != nil {
			return nil, fmt.Errorf("client: control-plane keys: %w", err)
		}
		d.validator = v
	}
	if d.client == nil {
		d.client = &http.Client{
			Timeout:       cfg.FetchTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy:                 nil, // discovery goes to the target itself, never through a proxy
				DialContext:           (&net.Dialer{Timeout: cfg.FetchTimeout}).DialContext,
				ResponseHeaderTimeout: cfg.FetchTimeout,
				MaxIdleConnsPerHost:   2,
				IdleConnTimeout:       90 * time.Second,
			},
		}
	}
	var err error
	if d.cache, err = lru.New[string, *Target](cfg.MaxTargets); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return d, nil
}

// Len returns the number of cached targets.
func (d *Discoverer) Len() int { return d.cache.Len() }

// Origin returns the origin of a target URL, "scheme://host:port".
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("client: target URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("client: target URL %q: want http://host[:port] or https://host[:port]", rawURL)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port), nil
}

// Discover returns what is known of the target at rawURL's origin: from
// the cache while it is fresh, else fetched (or revalidated) and verified.
// A target that cannot be reached or verified is returned as unknown, not
// as an error; the error is for a URL that names no target.
func (d *Discoverer) Discover(ctx context.Context, rawURL string) (*Target, error) {
	now := d.cfg.Clock()
	// The egress pipeline passes an origin already: a fresh hit needs no
	// parse (the warm decision's cost).
	if t, ok := d.cache.Get(rawURL); ok && now.Before(t.Expires) {
		return t, nil
	}
	origin, err := Origin(rawURL)
	if err != nil {
		return nil, err
	}
	prev, ok := d.cache.Get(origin)
	if ok && now.Before(prev.Expires) {
		return prev, nil
	}
	v, _, _ := d.flight.Do(origin, func() (any, error) {
		// A caller that missed the cache just as the previous flight
		// ended finds that flight's target here, and does not fetch again.
		if t, ok := d.cache.Get(origin); ok && now.Before(t.Expires) {
			return t, nil
		}
		// One fetch for every caller: it must not end with the first
		// caller's context.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.FetchTimeout)
		defer cancel()
		t := d.fetch(fctx, origin, prev)
		d.cache.Add(origin, t)
		return t, nil
	})
	return v.(*Target), nil
}

// Forget drops the cached target of rawURL's origin.
func (d *Discoverer) Forget(rawURL string) {
	if origin, err := Origin(rawURL); err == nil {
		d.cache.Remove(origin)
	}
}

// fetch gets and verifies origin's manifest, revalidating prev when it
// was verified and carries an ETag.
func (d *Discoverer) fetch(ctx context.Context, origin string, prev *Target) *Target {
	now := d.cfg.Clock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+ManifestPath, nil)
	if err != nil {
		return d.unknown(origin, "unreachable: "+err.Error(), now)
	}
	req.Header.Set("Accept", "application/json")
	if prev != nil && prev.Known() && prev.etag != "" {
		req.Header.Set("If-None-Match", prev.etag)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return d.unknown(origin, "unreachable: "+describeFetchError(err, d.cfg.FetchTimeout), now)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && prev != nil && prev.Known() {
		t := *prev
		t.Fetched, t.Expires = now, now.Add(d.ttl(resp.Header))
		return &t
	}
	if resp.StatusCode != http.StatusOK {
		return d.unknown(origin, "unreachable: "+ManifestPath+" answered "+strconv.Itoa(resp.StatusCode), now)
	}
	doc, err := readBounded(resp.Body, manifest.MaxSize)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return d.unknown(origin, "invalid manifest: "+err.Error(), now)
	case err != nil:
		return d.unknown(origin, "unreachable: reading the manifest: "+err.Error(), now)
	}
	m, err := manifest.Parse(doc)
	if err != nil {
		return d.unknown(origin, "invalid manifest: "+clip(strings.TrimPrefix(err.Error(), "invalid manifest: ")), now)
	}
	t := &Target{Origin: origin, Manifest: m, Claimed: m.TrustLevel, Fetched: now, etag: resp.Header.Get("ETag")}
	t.Expires = now.Add(d.ttl(resp.Header))
	att, attErr := d.attestation(ctx, origin, m)
	if attErr != nil {
		t.Problems = append(t.Problems, "attestation: "+attErr.Error())
	}
	t.Proof = identity.ProveManifest(identity.ProofInput{AgentID: m.AgentID(), VerificationKey: m.Identity.VerificationKey,
		Document: doc, Attestation: att}, identity.ProofConfig{Attestations: d.validator, PinnedKeys: d.cfg.PinnedKeys,
		MaxAttestationAge: d.cfg.MaxAttestationAge}, now)
	// A signature that does not verify even under the key the manifest
	// itself names was broken in transit or forged: the manifest is not
	// the target's. (SignedByKnownKey means it verified under that key.)
	if len(m.Signatures) > 0 && m.Identity.VerificationKey != "" && !t.Proof.SignedByKnownKey {
		if pub, err := identity.ParsePublicKey(m.Identity.VerificationKey); err == nil {
			if _, err := identity.VerifyManifestKey(doc, pub); err != nil {
				t.Proof = identity.ManifestProof{} // nothing about a forged document is proven
				return d.invalid(t, "invalid manifest: its signature does not verify under its own verification_key ("+clip(err.Error())+")", now)
			}
		}
	}
	switch {
	case t.Proof.Attested:
		t.Proven = "attested"
	case t.Proof.SignedByKnownKey:
		t.Proven = "signed"
	default:
		t.Proven = "claimed"
	}
	if t.Proof.AttestationErr != nil && att != nil {
		t.Problems = append(t.Problems, "attestation not accepted: "+clip(t.Proof.AttestationErr.Error()))
	}
	if t.Proof.SignatureErr != nil && len(m.Signatures) > 0 {
		t.Problems = append(t.Problems, "signature not accepted: "+clip(t.Proof.SignatureErr.Error()))
	}
	if d.cfg.RequireSigned && !t.Proof.SignedByKnownKey {
		return d.invalid(t, "unsigned, and signatures are required: no manifest signature by a pinned or attested key", now)
	}
	t.Level = manifest.CapTrustLevel(m.TrustLevel, manifest.Proof{Attested: t.Proof.Attested, SignedByKnownKey: t.Proof.SignedByKnownKey})
	return t
}

// attestation returns the target's attestation: from its endpoint, or the
// one embedded in its manifest; nil when it serves none.
func (d *Discoverer) attestation(ctx context.Context, origin string, m *manifest.Manifest) (*identity.Attestation, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+AttestationPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	var raw []byte
	switch {
	case err != nil:
		err = errors.New(describeFetchError(err, d.cfg.FetchTimeout))
	case resp.StatusCode == http.StatusOK:
		raw, err = readBounded(resp.Body, identity.MaxAttestationBytes)
	case resp.StatusCode != http.StatusNotFound:
		err = fmt.Errorf("%s answered %d", AttestationPath, resp.StatusCode)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if raw == nil && len(m.Attestation) > 0 {
		raw = m.Attestation
	}
	if raw == nil {
		return nil, err
	}
	a, derr := identity.DecodeAttestation(raw)
	if derr != nil {
		return nil, fmt.Errorf("malformed: %s", clip(derr.Error()))
	}
	return a, nil
}

// unknown is a target that could not be reached or read: a stand-in
// manifest with what an unknown agent is assumed to do — keep data for
// good, have humans review it, undo nothing — so every rule fails closed.
func (d *Discoverer) unknown(origin, why string, now time.Time) *Target {
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
	return &Target{Origin: origin, Manifest: standIn(host), Claimed: manifest.Unknown, Level: manifest.Unknown, Proven: why,
		Problems: []string{why}, Fetched: now, Expires: now.Add(d.cfg.NegativeTTL)}
}

func standIn(agentID string) *manifest.Manifest {
	return &manifest.Manifest{ProtocolVersion: manifest.DefaultProtocolVersion, TrustLevel: manifest.Unknown,
		Identity:      manifest.Identity{AgentID: agentID},
		Reversibility: manifest.Reversibility{Level: manifest.ReversibilityNone},
		Privacy:       manifest.Privacy{RetentionPolicy: manifest.RetentionPermanent, HumanInLoop: true}}
}

// invalid marks a fetched target whose manifest cannot be relied on (a
// broken signature, or none where one is required) as unknown: none of its
// claims stand, only the agent id it names, for records and reputation
// (which can only lower a score).
func (d *Discoverer) invalid(t *Target, why string, now time.Time) *Target {
	t.Manifest = standIn(t.Manifest.AgentID())
	t.Level, t.Proven, t.etag = manifest.Unknown, why, ""
	t.Problems = append(t.Problems, why)
	t.Expires = now.Add(d.cfg.NegativeTTL)
	return t
}

// ttl reads Cache-Control: no-store or no-cache revalidate every time,
// wherever they stand among the directives; max-age is used up to MaxTTL,
// else the configured TTL.
func (d *Discoverer) ttl(h http.Header) time.Duration {
	ttl := d.cfg.TTL
	for part := range strings.SplitSeq(h.Get("Cache-Control"), ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "no-store" || part == "no-cache":
			return 0
		case strings.HasPrefix(part, "max-age="):
			if n, err := strconv.Atoi(strings.TrimPrefix(part, "max-age=")); err == nil && n >= 0 {
				ttl = min(time.Duration(n)*time.Second, MaxTTL)
			}
		}
	}
	return ttl
}

func describeFetchError(err error, timeout time.Duration) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "no answer within " + timeout.String()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "cannot connect: " + oe.Err.Error()
	}
	return clip(err.Error())
}

// readBounded reads at most limit bytes of r, failing beyond.
func readBounded(r io.Reader, limit int64) ([]byte, error) { return wire.ReadAll(r, limit) }

// ETag returns the entity tag a sidecar serves for a manifest document.
func ETag(doc []byte) string {
	sum := sha256.Sum256(doc)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// clip keeps an untrusted value short and printable in messages.
func clip(v string) string {
	const n = 200
	if len(v) > n {
		v = v[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, v)
}
