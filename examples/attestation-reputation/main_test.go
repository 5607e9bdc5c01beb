package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestReputationStory runs the reputation half of the example and checks
// what it tells.
func TestReputationStory(t *testing.T) {
	var out bytes.Buffer
	if err := reputationStory(context.Background(), t.TempDir(), &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"anonymous slash                      refused: 401",
		"honeypot-agent: banking-agent=3.00 billing-agent=3.00 search-agent=3.00",
		"forged event                         refused: reputation: bad event signature",
		"banking-agent=6.00 billing-agent=6.00 search-agent=6.00",
		"honeypot-agent=3.00 (unknown)",
		"under trace trace-42 by fact-checker",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
}
