package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a process the harness started and stops: the backend, nginx or
// a sidecar. Its output goes to a log file, whose tail explains a failure.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's error, valid after done
}

// startChild starts cmd, sending its stdout and stderr to logPath unless
// cmd already has a Stdout. The child gets SIGTERM if the harness dies.
func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// pid returns the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end with SIGTERM and kills it after grace.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// failure describes why the process did not come up: how it exited, if it
// did, and the last lines of its log.
func (c *child) failure(reason error) error {
	msg := fmt.Sprintf("%s did not start: %v", c.name, reason)
	if c.exited() {
		msg += fmt.Sprintf(" (it exited: %v)", c.err)
	}
	if tail := logTail(c.log, 15); tail != "" {
		msg += "\n  its log (" + c.log + ") ends with:\n    " + strings.ReplaceAll(tail, "\n", "\n    ")
	}
	return errors.New(msg)
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// loopback returns "127.0.0.1:port".
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitReady calls probe every 50 ms until it returns nil, the process
// exits, ctx ends or timeout passes. A probe error wrapped in fatal ends the
// wait at once: the process answered, but wrongly.
func waitReady(ctx context.Context, c *child, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		var f fatal
		if errors.As(err, &f) {
			return c.failure(f.err)
		}
		last = err
		select {
		case <-c.done:
			return c.failure(last)
		case <-ctx.Done():
			return c.failure(fmt.Errorf("not ready after %v: %v", timeout, last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fatal marks a readiness probe error that retrying will not fix.
type fatal struct{ err error }

func (f fatal) Error() string { return f.err.Error() }
