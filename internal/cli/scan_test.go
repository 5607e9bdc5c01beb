package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/manifest"
)

// serveManifest starts a real HTTP server publishing body at the well-known path.
func serveManifest(t *testing.T, status int, body string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/agent-manifest", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func servedExample(t *testing.T, file string) string {
	t.Helper()
	m, err := manifest.ParseFile(exampleManifest(file))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := m.Document()
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

func TestScanBank(t *testing.T) {
	url := serveManifest(t, 200, servedExample(t, "secure_bank.json"))
	code, out, errOut := run(t, "scan", url+"/")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "Trust score: 100/100 (LOW risk)") {
		t.Errorf("output lacks 100/100 LOW:\n%s", out)
	}
	golden(t, "scan/secure_bank.txt", strings.ReplaceAll(out, url, "URL"))

	// Without a scheme, http:// is assumed.
	code, out, _ = run(t, "scan", "--json", strings.TrimPrefix(url, "http://"))
	if code != 0 {
		t.Fatalf("--json exit %d", code)
	}
	var res scanResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	hundred := 100
	want := scanResult{Status: "success", Verdict: manifest.VerdictValid, URL: url + "/.well-known/agent-manifest", AgentID: "secure-bank-agent",
		TrustScore: &hundred, RiskLevel: "LOW", TrustLevel: "verified_partner", Reversibility: "full", Retention: "ephemeral",
		ProvenTrustScore: &hundred, PeerTrustScore: &hundred,
		Findings: manifest.Findings{Errors: []manifest.Problem{}, HighRisk: []manifest.Problem{}, Warnings: []manifest.Problem{}}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("scan --json = %+v\nwant %+v", res, want)
	}
}

func TestScanRiskLevels(t *testing.T) {
	tests := []struct {
		file      string
		score     int
		peerScore int
		risk      string
		code      int
	}{
		{"untrusted_honeypot.json", 0, 0, "HIGH", 1}, // high-risk: exit 1, as iatp verify
		{"reviewer_agent.json", 70, 70, "MEDIUM", 0},
		{"standard_agent.json", 80, 80, "LOW", 0},
		{"research_agent.yaml", 50, 60, "MEDIUM", 0}, // training_consent: a Python peer says 60
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			url := serveManifest(t, 200, servedExample(t, tt.file))
			code, out, _ := run(t, "scan", "--json", url)
			if code != tt.code {
				t.Fatalf("exit %d, want %d", code, tt.code)
			}
			var res scanResult
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err)
			}
			if *res.TrustScore != tt.score || *res.PeerTrustScore != tt.peerScore || res.RiskLevel != tt.risk {
				t.Errorf("score %d (peer %d) %s, want %d (peer %d) %s", *res.TrustScore, *res.PeerTrustScore, res.RiskLevel, tt.score, tt.peerScore, tt.risk)
			}
		})
	}
	url := serveManifest(t, 200, servedExample(t, "untrusted_honeypot.json"))
	_, out, _ := run(t, "scan", url)
	golden(t, "scan/untrusted_honeypot.txt", strings.ReplaceAll(out, url, "URL"))
	for _, want := range []string{"HIGH risk", "Recommendations (HIGH risk)", "unlimited retention (permanent)", "humans may review your data",
		"✗ high-risk: trust_level: an untrusted agent without reversibility", "✗ High-risk manifest"} {
		if !strings.Contains(out, want) {
			t.Errorf("honeypot scan lacks %q:\n%s", want, out)
		}
	}
}

func TestScanFailures(t *testing.T) {
	// A port that was just closed: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	huge := serveManifest(t, 200, `{"agent_id":"`+strings.Repeat("a", 2<<20)+`"}`)

	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"connection refused", []string{"scan", closed}, "connection refused", 1},
		{"timeout", []string{"scan", "--timeout", "200ms", slow.URL}, "timed out after 200ms", 1},
		{"http status", []string{"scan", serveManifest(t, 404, `{"detail":"Not Found"}`)}, "HTTP status 404", 1},
		{"not json", []string{"scan", serveManifest(t, 200, `<html>hello</html>`)}, "response body is not JSON", 1},
		{"yaml is not json", []string{"scan", serveManifest(t, 200, "agent_id: a\n")}, "response body is not JSON", 1},
		{"invalid manifest", []string{"scan", serveManifest(t, 200, `{"agent_id":"a","trust_level":"gold","privacy_contract":{"retention":"ephemeral"}}`)}, `✗ error: trust_level: "gold" is not one of`, 1},
		{"not an object", []string{"scan", serveManifest(t, 200, `[]`)}, "manifest invalid", 1},
		{"too large", []string{"scan", huge}, "manifest larger than 1048576 bytes", 1},
		{"bad scheme", []string{"scan", "ftp://example.com"}, "only http and https", 2},
		{"bad timeout", []string{"scan", "--timeout", "0s", "example.com"}, "--timeout must be positive", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.want) {
				t.Errorf("output %q does not say %q", out+errOut, tt.want)
			}
		})
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
