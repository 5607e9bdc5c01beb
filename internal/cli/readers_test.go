package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/sidecar"
)

// TestReadersAgree runs the three readers of a manifest — iatp verify on the
// file, the sidecar starting with it, and iatp scan of what that sidecar
// serves — over every example manifest, and checks that they reach the same
// verdict with the same findings in the same words.
func TestReadersAgree(t *testing.T) {
	files, err := filepath.Glob(exampleManifest("*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		if ext := filepath.Ext(file); ext != ".json" && ext != ".yaml" && ext != ".yml" {
			continue
		}
		n++
		t.Run(filepath.Base(file), func(t *testing.T) {
			verdict, findings := verifyReader(t, file)

			sc, logged := sidecarReader(t, file)
			sidecarVerdict := manifest.VerdictValid
			for _, line := range logged {
				if strings.HasPrefix(line, string(manifest.SeverityHighRisk)+":") {
					sidecarVerdict = manifest.VerdictHighRisk
				}
			}
			srv := httptest.NewServer(sc.Handler())
			defer srv.Close()
			scanVerdict, scanFindings := scanReader(t, srv.URL)

			if verdict == manifest.VerdictInvalid {
				t.Fatalf("example %s is invalid: %q", file, findings)
			}
			if sidecarVerdict != verdict || scanVerdict != verdict {
				t.Errorf("verdicts differ: verify %q, sidecar %q, scan %q", verdict, sidecarVerdict, scanVerdict)
			}
			if !reflect.DeepEqual(logged, findings) {
				t.Errorf("the sidecar logged %q\nverify reported  %q", logged, findings)
			}
			if !reflect.DeepEqual(scanFindings, findings) {
				t.Errorf("scan reported   %q\nverify reported %q", scanFindings, findings)
			}
		})
	}
	if n < 7 {
		t.Errorf("checked %d example manifests, want at least 7", n)
	}
}

// TestReadersAgreeOnInvalid checks the same for a manifest with an error:
// verify and scan call it invalid in the same words, and the sidecar
// refuses to start, quoting the same error.
func TestReadersAgreeOnInvalid(t *testing.T) {
	doc := `{"agent_id":"a","trust_level":"gold","privacy_contract":{"retention":"ephemeral"}}`
	file := filepath.Join(t.TempDir(), "gold.json")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	verdict, findings := verifyReader(t, file)
	scanVerdict, scanFindings := scanReader(t, serveManifest(t, http.StatusOK, doc))
	want := []string{`error: trust_level: "gold" is not one of verified_partner, trusted, standard, unknown, untrusted`}
	if verdict != manifest.VerdictInvalid || scanVerdict != manifest.VerdictInvalid || !reflect.DeepEqual(findings, want) || !reflect.DeepEqual(scanFindings, want) {
		t.Errorf("verify %q %q, scan %q %q; want invalid %q", verdict, findings, scanVerdict, scanFindings, want)
	}
	_, _, err := config.Resolve(nil, "", func(string) string { return "" },
		config.Flags{AgentURL: "http://127.0.0.1:1", Manifest: file, DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(want[0], "error: ")) {
		t.Errorf("the sidecar's configuration error %v does not quote %q", err, want[0])
	}
}

func verifyReader(t *testing.T, file string) (manifest.Verdict, []string) {
	t.Helper()
	_, out, errOut := run(t, "verify", "--json", file)
	var res verifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, out, errOut)
	}
	return res.Verdict, problemStrings(res.All())
}

func scanReader(t *testing.T, url string) (manifest.Verdict, []string) {
	t.Helper()
	_, out, errOut := run(t, "scan", "--json", url)
	var res scanResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("scan --json: %v\n%s%s", err, out, errOut)
	}
	return res.Verdict, problemStrings(res.All())
}

// sidecarReader starts a sidecar with the manifest file as iatp sidecar
// does, and returns it with the manifest findings of its start-up log.
func sidecarReader(t *testing.T, file string) (*sidecar.Sidecar, []string) {
	t.Helper()
	cfg, _, err := config.Resolve(nil, "", func(string) string { return "" },
		config.Flags{AgentURL: "http://127.0.0.1:1", Manifest: file, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sc, err := sidecar.New(cfg)
	if err != nil {
		t.Fatalf("sidecar.New: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	logged := []string{}
	dec := json.NewDecoder(&logs)
	for dec.More() {
		var rec struct {
			Level, Msg string
		}
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if msg, ok := strings.CutPrefix(rec.Msg, "manifest: "); ok && rec.Level == "WARN" {
			logged = append(logged, msg)
		}
	}
	return sc, logged
}

func problemStrings(ps []manifest.Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
