package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestSidecarConfig(t *testing.T) {
	decode := func(t *testing.T, data []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Run("default turns the rate limit off", func(t *testing.T) {
		data, err := sidecarConfig("")
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, data)
		if got := m["rate_limit"].(map[string]any)["requests_per_minute"]; got != -1 {
			t.Fatalf("rate_limit.requests_per_minute = %v, want -1", got)
		}
		if len(m) != 1 {
			t.Fatalf("config sets more than the rate limit: %v", m)
		}
	})
	t.Run("extra file merges over it, paths made absolute", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		extra := filepath.Join(dir, "extra.yaml")
		doc := "rate_limit:\n  burst: 5\nrecorder:\n  sync: always\nadmin_token_file: admin.token\npolicy:\n  rules: []\n"
		if err := os.WriteFile(extra, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		data, err := sidecarConfig(extra)
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, data)
		rl := m["rate_limit"].(map[string]any)
		if rl["requests_per_minute"] != -1 || rl["burst"] != 5 {
			t.Errorf("rate_limit = %v, want the harness's -1 kept and the file's burst added", rl)
		}
		if got := m["recorder"].(map[string]any)["sync"]; got != "always" {
			t.Errorf("recorder.sync = %v, want always (a value, not a path)", got)
		}
		if got := m["admin_token_file"]; got != filepath.Join(dir, "admin.token") {
			t.Errorf("admin_token_file = %v, want the absolute path", got)
		}
	})
	t.Run("extra file can turn the limit back on", func(t *testing.T) {
		extra := filepath.Join(t.TempDir(), "x.yaml")
		if err := os.WriteFile(extra, []byte("rate_limit: {requests_per_minute: 600}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		data, err := sidecarConfig(extra)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, data)["rate_limit"].(map[string]any)["requests_per_minute"]; got != 600 {
			t.Errorf("requests_per_minute = %v, want the file's 600", got)
		}
	})
	t.Run("missing and broken files", func(t *testing.T) {
		if _, err := sidecarConfig(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "--iatp-config") {
			t.Errorf("missing file: %v", err)
		}
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("rate_limit: [\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := sidecarConfig(bad); err == nil {
			t.Error("broken YAML accepted")
		}
	})
}

func TestNginxConfig(t *testing.T) {
	conf := nginxConfig("/tmp/p", "127.0.0.1:9001", "127.0.0.1:9000", 1<<20+1)
	for _, want := range []string{
		"worker_processes 2;", "access_log off;", "keepalive 64;", "proxy_http_version 1.1;",
		`proxy_set_header Connection "";`, "server 127.0.0.1:9000;", "listen 127.0.0.1:9001;",
		"daemon off;", "pid /tmp/p/nginx.pid;", "client_body_temp_path /tmp/p/client_body;",
		"client_body_buffer_size 1025k;", "client_max_body_size 1025k;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
}

func TestParseOptions(t *testing.T) {
	def := defaultOptions()
	if def.estimate() >= 4*time.Minute {
		t.Errorf("the default measurement is estimated at %v; the whole run must stay under 5 minutes", def.estimate())
	}
	o, err := parseOptions([]string{"--targets", "iatp, direct,iatp", "--rates", "500,2000", "--sizes", "", "--iatp-args", "--log-level  debug"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Targets, ",") != "iatp,direct" || len(o.Rates) != 2 || o.Rates[1] != 2000 || len(o.Sizes) != 0 {
		t.Errorf("parsed %+v", o)
	}
	if strings.Join(o.IATPArgs, "|") != "--log-level|debug" {
		t.Errorf("iatp args %q", o.IATPArgs)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--targets", "haproxy"}, `unknown target "haproxy"`},
		{[]string{"--rates", "1000,x"}, "--rates"},
		{[]string{"--sizes", "1k,2q"}, "--sizes"},
		{[]string{"--sizes", "10"}, "at least"},
		{[]string{"--runs", "0"}, "--runs"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"stray"}, "unexpected argument"},
	}
	for _, tt := range bad {
		_, err := parseOptions(tt.args, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseOptions(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
