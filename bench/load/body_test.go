package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONBody(t *testing.T) {
	sizes := []int{minBodySize, minBodySize + 1, 1 << 10, 2200, 2300, 4 << 10, 16 << 10, 128 << 10, 1 << 20}
	for _, size := range sizes {
		b, err := jsonBody(size)
		if err != nil {
			t.Fatalf("jsonBody(%d): %v", size, err)
		}
		if len(b) != size {
			t.Fatalf("jsonBody(%d) is %d bytes", size, len(b))
		}
		var doc struct {
			Messages []struct{ Role, Content string }
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("jsonBody(%d) is not JSON: %v", size, err)
		}
		for _, m := range doc.Messages {
			if len(m.Content) > maxContent {
				t.Fatalf("jsonBody(%d): a message of %d bytes", size, len(m.Content))
			}
			// Only letters and spaces: nothing a detector could take for
			// a card, an SSN, an email or a token.
			if i := strings.IndexFunc(m.Content, func(r rune) bool { return r != ' ' && (r < 'a' || r > 'z') }); i >= 0 {
				t.Fatalf("jsonBody(%d): message text holds %q", size, m.Content[i])
			}
			if strings.Contains(m.Content, "sk") && strings.Contains(m.Content, "-") {
				t.Fatalf("jsonBody(%d): text could look like a key", size)
			}
		}
	}
	if _, err := jsonBody(minBodySize - 1); err == nil {
		t.Error("jsonBody below the minimum succeeded")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1k", 1024, true},
		{"128K", 128 << 10, true},
		{"1m", 1 << 20, true},
		{"1000", 1000, true},
		{" 16k ", 16 << 10, true},
		{"0", 0, false},
		{"-1k", 0, false},
		{"k", 0, false},
		{"1g", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, n := range []int{1024, 16 << 10, 1 << 20, 1000} {
		back, err := parseSize(strings.NewReplacer(" KiB", "k", " MiB", "m", " B", "").Replace(sizeLabel(n)))
		if err != nil || back != n {
			t.Errorf("sizeLabel(%d) = %q does not read back: %d, %v", n, sizeLabel(n), back, err)
		}
	}
}
