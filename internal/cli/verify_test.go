package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iatp/iatp/manifest"
)

func TestVerifyExamples(t *testing.T) {
	tests := []struct {
		file     string
		wantCode int
		score    int
		verdict  manifest.Verdict
	}{
		{"secure_bank.json", 0, 10, manifest.VerdictValid},
		{"untrusted_honeypot.json", 1, 0, manifest.VerdictHighRisk}, // well-formed, not invalid
		{"standard_agent.json", 0, 8, manifest.VerdictValid},
		{"reviewer_agent.json", 0, 7, manifest.VerdictValid},
		{"coder_agent.json", 0, 10, manifest.VerdictValid},
		{"booking_agent.json", 0, 10, manifest.VerdictValid},
		{"research_agent.yaml", 0, 5, manifest.VerdictValid},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			code, out, _ := run(t, "verify", exampleManifest(tt.file))
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tt.wantCode, out)
			}
			golden(t, filepath.Join("verify", tt.file+".txt"), strings.ReplaceAll(out, filepath.Join("..", "..")+"/", ""))

			code, out, _ = run(t, "verify", "--json", exampleManifest(tt.file))
			if code != tt.wantCode {
				t.Errorf("--json: exit %d, want %d", code, tt.wantCode)
			}
			var res verifyResult
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("--json output is not JSON: %v\n%s", err, out)
			}
			if res.TrustScore == nil || *res.TrustScore != tt.score {
				t.Errorf("trust_score = %v, want %d", res.TrustScore, tt.score)
			}
			wantStatus := map[int]string{0: "success", 1: "fail"}[tt.wantCode]
			if res.Status != wantStatus || res.Verdict != tt.verdict {
				t.Errorf("status, verdict = %q, %q; want %q, %q", res.Status, res.Verdict, wantStatus, tt.verdict)
			}
		})
	}
}

func TestVerifyBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout (or stderr for usage errors)
	}{
		{"missing file", []string{"verify", filepath.Join(dir, "absent.json")}, 2, "no such file"},
		{"no argument", []string{"verify"}, 2, "verify needs a manifest file"},
		{"unknown flag", []string{"verify", "--nope", "x"}, 2, "unknown flag"},
		{"empty file", []string{"verify", write("empty.json", "")}, 1, "the document is empty"},
		{"json array", []string{"verify", write("array.json", "[1,2]")}, 1, "got an array"},
		{"json scalar", []string{"verify", write("scalar.json", "42")}, 1, "got a number"},
		{"not json or yaml", []string{"verify", write("junk.txt", "{{{ not: [")}, 1, "invalid JSON"},
		{"too large", []string{"verify", write("big.json", `{"agent_id":"`+strings.Repeat("x", 1<<20)+`"}`)}, 1, "larger than 1048576 bytes"},
		{"wrong types", []string{"verify", write("types.json", `{"agent_id":5,"privacy_contract":{"retention":true}}`)}, 1, "agent_id: must be a string, got a number"},
		{"wrong types json", []string{"verify", "--json", write("types2.json", `{"agent_id":"a","capabilities":{"idempotency":"yes"},"privacy_contract":{"retention":"ephemeral"}}`)}, 1, `"field": "capabilities.idempotency"`},
		{"not a manifest json", []string{"verify", "--json", write("array2.json", "[]")}, 1, `"status": "fail"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.wantOut) {
				t.Errorf("output does not contain %q:\nstdout: %s\nstderr: %s", tt.wantOut, out, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v["name"] != "iatp" || v["version"] == "" || !strings.HasPrefix(v["go"], "go1.") {
		t.Errorf("version --json = %v", v)
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "iatp ") {
		t.Errorf("version = %d %q", code, out)
	}
}
