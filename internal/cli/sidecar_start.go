package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/sidecar"
)

// This file holds what iatp sidecar does around sidecar.New and Run: read
// the configuration reporting every problem at once, turn start-up errors
// into what to do about them, and check that the agent answers.

// loadSidecarConfig reads the --config file (if any) and resolves it with
// the environment and the flags. Every problem of every source comes back
// in one error; its exit status is 2 when the --config file is missing.
func loadSidecarConfig(configPath string, getenv func(string) string, flags config.Flags) (sidecar.Config, config.Source, error) {
	var (
		file    *config.File
		dir     string
		errs    []error
		missing bool
	)
	if configPath != "" {
		var err error
		file, err = config.Load(configPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = true
			errs = append(errs, fmt.Errorf("--config %s: no such file (the path is relative to the working directory)", configPath))
		case err != nil:
			errs = append(errs, err)
		}
		dir = filepath.Dir(configPath)
	}
	cfg, src, err := config.Resolve(file, dir, getenv, flags)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return cfg, src, nil
	}
	code := exitFail
	if missing {
		code = exitUsage
	}
	return cfg, src, &exitError{code: code, err: configProblems(errors.Join(errs...))}
}

// configProblems renders err — one configuration problem, or many joined —
// as "cannot start the sidecar", the problems one per line, and what to do.
func configProblems(err error) error {
	problems := flatten(err)
	var b strings.Builder
	if len(problems) == 1 {
		fmt.Fprintf(&b, "cannot start the sidecar: %s\n", indentMore(problems[0].Error()))
		b.WriteString("Fix it and start again; docs/configuration.md lists every setting.")
	} else {
		fmt.Fprintf(&b, "cannot start the sidecar (%d problems):\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(&b, "  %s\n", indentMore(p.Error()))
		}
		b.WriteString("Fix them and start again; docs/configuration.md lists every setting.")
	}
	return errors.New(b.String())
}

// flatten lists the errors joined in err, recursively.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func indentMore(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

// explainStartError turns an error of sidecar.New into what failed and what
// to do next. The recorder's exported errors are mapped here, where the
// flags that fix them are known.
func explainStartError(err error, cfg sidecar.Config) error {
	recDir := cfg.Recorder.Dir
	if recDir == "" {
		recDir = filepath.Join(cfg.DataDir, "recorder")
	}
	switch {
	case errors.Is(err, recorder.ErrLocked):
		lock := filepath.Join(recDir, "LOCK")
		return fmt.Errorf("cannot start the sidecar: the data directory %s is in use: another process holds the lock of its flight recorder.\n"+
			"Another iatp sidecar is probably running with --data-dir %s; find it with: fuser -v %s (or: lsof %s).\n"+
			"Stop it, or give this sidecar a data directory of its own with --data-dir", cfg.DataDir, cfg.DataDir, lock, lock)
	case errors.Is(err, recorder.ErrCorrupt):
		return fmt.Errorf("cannot start the sidecar: the flight recorder in %s failed verification: records were edited, deleted or cut since they were written.\n"+
			"  %v\n"+
			"See what changed with: iatp audit verify %s\n"+
			"To set the old files aside (kept in %s/recovered-<time>/) and start a new chain, start again with --recorder-recover (or recorder.recover: true in the config file)",
			recDir, err, cfg.DataDir, recDir)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot start the sidecar: %v\nGive the sidecar's user write access to %s, or choose another --data-dir", err, cfg.DataDir)
	}
	return configProblems(err)
}

// explainServeError turns an error of Sidecar.Run into what failed and what
// to do next.
func explainServeError(err error, listen string) error {
	_, port, _ := net.SplitHostPort(listen)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot listen on %s: another process listens there.\n"+
			"Find it with: ss -ltnp 'sport = :%s' (or: lsof -i :%s); stop it, or choose another address with --listen", listen, port, port)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot listen on %s: permission denied (ports below 1024 need privileges).\n"+
			"Choose a port above 1023 with --listen, such as 127.0.0.1:8001", listen)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("cannot listen on %s: no interface of this machine has that address.\n"+
			"Use 127.0.0.1 (this machine only), an empty host such as :%s (every interface), or one of this machine's addresses", listen, port)
	}
	return err
}

// agentDialTimeout bounds the start-up check that the agent answers.
const agentDialTimeout = 2 * time.Second

// warnIfAgentUnreachable logs a warning, naming the agent URL and what to
// check, when nothing accepts a TCP connection at the agent's address. The
// sidecar starts anyway: the agent may simply start later (as in a pod).
func warnIfAgentUnreachable(ctx context.Context, logger *slog.Logger, agentURL string) {
	u, err := url.Parse(agentURL)
	if err != nil || u.Host == "" {
		return // the configuration check reports it
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	d := net.Dialer{Timeout: agentDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
		return
	}
	logger.Warn("the agent does not accept connections: calls to /proxy get 502 until it does",
		"agent_url", agentURL, "error", dialProblem(err),
		"check", "is the agent running and listening on "+addr+"? is --agent-url (IATP_AGENT_URL, agent_url) its address?")
}

// dialProblem says briefly why a connection failed.
func dialProblem(err error) string {
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens there"
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve host %q", dnsErr.Name)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", agentDialTimeout)
	}
	return err.Error()
}

// logStartFailure reports a start-up error as one JSON log record when the
// log is JSON, so that a log collector sees it; the returned error then
// prints nothing more.
func logStartFailure(logger *slog.Logger, jsonLog bool, err error) error {
	if err == nil || !jsonLog {
		return err
	}
	code := exitFail
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	logger.Error("iatp sidecar cannot run", "error", err.Error(), "exit_status", code)
	return &exitError{code: code, err: errors.New("")}
}
