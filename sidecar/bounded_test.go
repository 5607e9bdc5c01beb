package sidecar

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLRUBound(t *testing.T) {
	c := newLRU[string, int](3)
	for i := range 10 {
		c.put(strconv.Itoa(i), i)
	}
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	for _, k := range []string{"0", "6"} {
		if _, ok := c.get(k); ok {
			t.Errorf("%s survived eviction", k)
		}
	}
	c.get("7") // 7 is now the most recently used
	c.put("10", 10)
	if _, ok := c.get("7"); !ok {
		t.Error("recently used 7 was evicted")
	}
	if _, ok := c.get("8"); ok {
		t.Error("least recently used 8 was kept")
	}
}

// TestRateLimiterBoundUnderAbuse floods the limiter with callers: it keeps
// at most maxRateLimitKeys buckets.
func TestRateLimiterBoundUnderAbuse(t *testing.T) {
	r := newRateLimiter(60, 1)
	now := time.Unix(1_700_000_000, 0)
	for i := range maxRateLimitKeys + 5000 {
		r.allow("ip:"+strconv.Itoa(i), now)
	}
	if n := r.buckets.len(); n != maxRateLimitKeys {
		t.Errorf("%d buckets, want the bound %d", n, maxRateLimitKeys)
	}
	// The limiter still limits.
	if ok, _ := r.allow("agent:a", now); !ok {
		t.Fatal("first request refused")
	}
	ok, retry := r.allow("agent:a", now)
	if ok || retry != 1 {
		t.Errorf("second request in the same instant: ok %v retry %d, want refused with 1s", ok, retry)
	}
	if ok, _ := r.allow("agent:a", now.Add(time.Second)); !ok {
		t.Error("refused after the bucket refilled")
	}
	if newRateLimiter(0, 0) != nil {
		t.Error("a zero rate must mean no limiter")
	}
}

func TestQuarantineBoundUnderAbuse(t *testing.T) {
	q := newQuarantineStore()
	for i := range maxQuarantineSessions + 100 {
		q.add("t-"+strconv.Itoa(i), "w", nil, time.Unix(0, 0))
	}
	if n := q.sessions.len(); n != maxQuarantineSessions {
		t.Errorf("%d sessions, want the bound %d", n, maxQuarantineSessions)
	}
	if _, ok := q.get("t-0"); ok {
		t.Error("the oldest session was kept past the bound")
	}
	if s, ok := q.get("t-" + strconv.Itoa(maxQuarantineSessions+99)); !ok || !s.UserOverride {
		t.Error("the newest session is missing")
	}
}

func TestSecretToken(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{"", false},
		{"true", false},
		{"short-token", false},
		{"passwordpassword", false},
		{"changemechangemechangeme", false},
		{"aaaaaaaaaaaaaaaaaaaa", false},
		{"abababababababababab", false},
		{"  " + testOverride + "\n", true},
		{GenerateToken(), true},
	}
	for _, tt := range tests {
		tok, err := newSecretToken(tt.token)
		if (err == nil) != tt.ok {
			t.Errorf("newSecretToken(%q) error %v, want ok=%v", tt.token, err, tt.ok)
		}
		if err == nil && !tok.matches(" "+strings.TrimSpace(tt.token)+" ") {
			t.Errorf("%q does not match itself", tt.token)
		}
	}
	tok, _ := newSecretToken(testOverride)
	for _, wrong := range []string{"", "true", testOverride[:len(testOverride)-1], testOverride + "x"} {
		if tok.matches(wrong) {
			t.Errorf("matches %q", wrong)
		}
	}
	if (secretToken{}).matches("") {
		t.Error("the zero token matches the empty string")
	}
	if s := tok.String(); strings.Contains(s, testOverride) {
		t.Errorf("String() reveals the token: %q", s)
	}
}
