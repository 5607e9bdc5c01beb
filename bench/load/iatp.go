package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// sidecarManifest is the protected agent's manifest: a verified partner with
// full reversibility and ephemeral retention (examples/manifests/secure_bank.json
// without its rate limit), so the benchmark's request is allowed with no
// warning and every check still runs.
const sidecarManifest = `{
  "agent_id": "load-backend",
  "agent_version": "1.0.0",
  "trust_level": "verified_partner",
  "capabilities": {
    "reversibility": "full",
    "idempotency": true,
    "sla_latency": "2000ms",
    "undo_window": "24h"
  },
  "privacy_contract": {
    "retention": "ephemeral",
    "human_review": false,
    "storage_location": "us-east",
    "encryption_at_rest": true,
    "encryption_in_transit": true
  },
  "scopes": ["payments:read", "payments:write"]
}
`

// baseSidecarConfig is the harness's sidecar configuration: the defaults,
// with the per-caller rate limit off (all load comes from one caller).
func baseSidecarConfig() map[string]any {
	return map[string]any{"rate_limit": map[string]any{"requests_per_minute": -1}}
}

// sidecarConfig returns the YAML configuration for the sidecar: the
// harness's base, with the operator's extra file (may be "") merged over it.
// Relative paths in the extra file are made absolute against its directory,
// since the merged file is written elsewhere.
func sidecarConfig(extra string) ([]byte, error) {
	cfg := baseSidecarConfig()
	if extra != "" {
		data, err := os.ReadFile(extra)
		if err != nil {
			return nil, fmt.Errorf("--iatp-config: %w", err)
		}
		var user map[string]any
		if err := yaml.Unmarshal(data, &user); err != nil {
			return nil, fmt.Errorf("--iatp-config %s: %w", extra, err)
		}
		dir, err := filepath.Abs(filepath.Dir(extra))
		if err != nil {
			return nil, err
		}
		absolutePaths(user, dir)
		mergeInto(cfg, user)
	}
	return yaml.Marshal(cfg)
}

// mergeInto copies src over dst, merging nested mappings key by key.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// absolutePaths replaces every string value of m that names an existing
// file or directory relative to dir by its absolute path.
func absolutePaths(m map[string]any, dir string) {
	var fix func(v any) any
	fix = func(v any) any {
		switch x := v.(type) {
		case string:
			if x != "" && !filepath.IsAbs(x) && !strings.ContainsAny(x, "\n") {
				p := filepath.Join(dir, x)
				if _, err := os.Stat(p); err == nil {
					return p
				}
			}
		case map[string]any:
			for k, e := range x {
				x[k] = fix(e)
			}
		case []any:
			for i, e := range x {
				x[i] = fix(e)
			}
		}
		return v
	}
	fix(m)
}

// startSidecar starts `iatp sidecar` in front of agentURL, as an operator
// would: a manifest file, the harness's config, a fresh data directory (the
// flight recorder keeps its default durability), warnings-only logging, and
// the operator's --iatp-args last. It is ready when it allows the
// benchmark's request.
func startSidecar(ctx context.Context, h *harness, rd *runDir, name, agentURL string, args []string) (*instance, error) {
	return startSidecarAs(ctx, h, rd, name, "load-backend", agentURL, args)
}

// startSidecarAs is startSidecar for an agent named agentID.
func startSidecarAs(ctx context.Context, h *harness, rd *runDir, name, agentID, agentURL string, args []string) (*instance, error) {
	dir, err := rd.sub(name)
	if err != nil {
		return nil, err
	}
	manifest := filepath.Join(dir, "manifest.json")
	config := filepath.Join(dir, "iatp.yaml")
	doc := strings.Replace(sidecarManifest, `"agent_id": "load-backend"`, `"agent_id": "`+agentID+`"`, 1)
	if err := os.WriteFile(manifest, []byte(doc), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(config, h.sidecarConfig, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := []string{"sidecar",
		"--agent-url", agentURL,
		"--listen", loopback(port),
		"--manifest", manifest,
		"--config", config,
		"--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn",
		"--egress-listen", "off",
	}
	argv = append(argv, args...)
	argv = append(argv, h.opts.IATPArgs...)
	c, err := startChild(name, exec.Command(h.iatpBin, argv...), filepath.Join(dir, "sidecar.log"))
	if err != nil {
		return nil, err
	}
	in := &instance{
		url:      "http://" + loopback(port) + "/proxy",
		pids:     func() []int { return []int{c.pid()} },
		metrics:  []string{"http://" + loopback(port) + "/metrics"},
		children: []*child{c},
	}
	if err := waitReady(ctx, c, 30*time.Second, probePost(in.url, h.body)); err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	return in, nil
}

// buildIATP builds ./cmd/iatp of the repository at root into dir.
func buildIATP(ctx context.Context, root, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("cannot build iatp: the go command is not on PATH (or pass --iatp-bin)")
	}
	out := filepath.Join(dir, "iatp")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/iatp")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/iatp in %s: %v\n%s", root, err, msg)
	}
	return out, nil
}

// repoRoot finds the iatp module's root from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if first, _, _ := strings.Cut(string(data), "\n"); err == nil && strings.TrimSpace(first) == "module github.com/iatp/iatp" {
			return dir, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the iatp repository (no go.mod of github.com/iatp/iatp above the working directory); run from the repository or pass --iatp-bin")
		}
		dir = parent
	}
}

// startMesh starts the two-sidecar path of a call between agents: the
// caller's sidecar (its egress proxy signs as load-caller) and the callee's
// (its ingress verifies that signature against the pinned key) in front of
// the backend. The client sends to the callee's /proxy through the caller's
// egress proxy, as an agent with HTTP_PROXY does.
func startMesh(ctx context.Context, h *harness, rd *runDir) (*instance, error) {
	dir, err := rd.sub("iatp-mesh-keys")
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, h.iatpBin, "keygen", "--out", dir, "--name", "load-caller").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("iatp keygen: %v: %s", err, out)
	}
	callee, err := startSidecarAs(ctx, h, rd, "iatp-mesh-callee", "load-backend", rd.backendURL,
		[]string{"--trusted-agent", "load-caller=" + filepath.Join(dir, "load-caller.pub")})
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		callee.stop()
		return nil, err
	}
	caller, err := startSidecarAs(ctx, h, rd, "iatp-mesh-caller", "load-caller", rd.backendURL,
		[]string{"--key", filepath.Join(dir, "load-caller.key"), "--egress-listen", loopback(port)})
	if err != nil {
		callee.stop()
		return nil, err
	}
	in := &instance{
		url:      callee.url,
		proxy:    "http://" + loopback(port),
		pids:     func() []int { return append(caller.pids(), callee.pids()...) },
		metrics:  append(caller.metrics, callee.metrics...),
		children: append(callee.children, caller.children...),
	}
	probe := probePostVia(in.url, in.proxy, h.body)
	if err := waitReady(ctx, caller.children[0], 30*time.Second, probe); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}
