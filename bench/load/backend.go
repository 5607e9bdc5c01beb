package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// The harness re-executes its own binary to run the backend agent in a
// process of its own, so the backend's CPU does not mix with the load
// generator's. These environment variables select that role; they are not
// part of the harness's interface.
const (
	roleEnv   = "IATP_LOAD_ROLE"
	listenEnv = "IATP_LOAD_LISTEN"
)

// backendAnswer is what the backend answers to every request: a small JSON
// document with no sensitive data.
var backendAnswer = []byte(`{"status":"ok","agent":"load-backend","result":"accepted","n":1}`)

// runChildRole runs the child role named in the environment, if any, and
// reports whether it did. main and TestMain call it first.
func runChildRole() (bool, error) {
	switch os.Getenv(roleEnv) {
	case "":
		return false, nil
	case "backend":
		return true, serveBackend(os.Getenv(listenEnv))
	default:
		return true, fmt.Errorf("%s=%q: unknown role", roleEnv, os.Getenv(roleEnv))
	}
}

// serveBackend is the minimal agent of PERFORMANCE.md: a Go net/http server
// that reads the whole request body and answers backendAnswer with a
// Content-Length, on any path. It stops on SIGTERM or SIGINT.
func serveBackend(addr string) error {
	if addr == "" {
		return fmt.Errorf("%s is not set", listenEnv)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	length := strconv.Itoa(len(backendAnswer))
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			h := w.Header()
			h["Content-Type"] = []string{"application/json"}
			h["Content-Length"] = []string{length}
			_, _ = w.Write(backendAnswer)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
