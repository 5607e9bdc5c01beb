package detect

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestScrubJSONGolden scrubs a realistic agent request and compares the
// result with testdata/request.scrubbed.golden. Run with -update after an
// intended change, and review the diff.
func TestScrubJSONGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, found, err := ScrubJSON(nil, in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := set(CreditCard, SSN, Email, Secret); found != want {
		t.Errorf("kinds found = %v, want %v", found, want)
	}
	if !json.Valid(out) {
		t.Fatalf("scrubbed request is not valid JSON:\n%s", out)
	}
	golden := filepath.Join("testdata", "request.scrubbed.golden")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestScrubJSONGolden -update to create it)", err)
	}
	if string(out) != string(want) {
		t.Errorf("scrubbed request differs from %s:\n%s", golden, out)
	}
}
