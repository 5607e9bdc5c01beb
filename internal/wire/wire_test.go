package wire

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"x-agent-trace-id", "x-agent-trace-id"},
		{"X-Agent-Trace-ID", "x-agent-trace-id"},
		{"X_Agent_Trace_ID", "x-agent-trace-id"},
		{"x_iatp_caller_id", "x-iatp-caller-id"},
		{"CONTENT-TYPE", "content-type"},
		{"", ""},
		{"x.y:z", "x.y:z"},
		{"Ä_B", "Ä-b"}, // only ASCII letters fold
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSame(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"X-Agent-Trace-ID", "x-agent-trace-id", true},
		{"X_Agent_Trace_ID", "X-Agent-Trace-ID", true},
		{"x_agent_trace_id", "X-AGENT-TRACE-ID", true},
		{"X-Agent-Trace-ID", "X-Agent-Trace-IDs", false},
		{"X-Agent-Trace-ID", "X-Agent-Trace.ID", false},
		{"", "", true},
		{"a", "", false},
		{"[", "{", false}, // '[' is not 'Z'+1 folded
	}
	for _, tt := range tests {
		if got := Same(tt.a, tt.b); got != tt.want {
			t.Errorf("Same(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Same(tt.a, tt.b); got != (Normalize(tt.a) == Normalize(tt.b)) {
			t.Errorf("Same(%q, %q) disagrees with Normalize", tt.a, tt.b)
		}
	}
}

func TestIsIATP(t *testing.T) {
	for name, want := range map[string]bool{
		"X-IATP-Caller-ID":     true,
		"x-iatp-anything":      true,
		"X_IATP_Caller_ID":     true,
		"x_iatp-mixed":         true,
		"X-Iatp-A":             true,
		"X-IATP-":              false, // no name after the prefix
		"X-IATP":               false,
		"X-IATPCaller":         false,
		"IATP-Caller-ID":       false,
		"X-Agent-Trace-ID":     false,
		"XX-IATP-Caller":       false,
		"X-IATQ-Caller":        false,
		"":                     false,
		"X-Forwarded-For-IATP": false,
	} {
		if got := IsIATP(name); got != want {
			t.Errorf("IsIATP(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIsHopByHop(t *testing.T) {
	for name, want := range map[string]bool{
		"Connection":          true,
		"keep-alive":          true,
		"Keep_Alive":          true,
		"Proxy-Authenticate":  true,
		"Proxy-Authorization": true,
		"Proxy-Connection":    true,
		"TE":                  true,
		"Trailer":             true,
		"Transfer-Encoding":   true,
		"transfer_encoding":   true,
		"Upgrade":             true,
		"Trailers":            false,
		"Content-Length":      false,
		"Authorization":       false,
		"X-Connection":        false,
	} {
		if got := IsHopByHop(name); got != want {
			t.Errorf("IsHopByHop(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIsOwned(t *testing.T) {
	for _, name := range Owned {
		for _, spelling := range []string{name, strings.ToLower(name), strings.ToUpper(name), strings.ReplaceAll(name, "-", "_")} {
			if !IsOwned(spelling) {
				t.Errorf("IsOwned(%q) = false", spelling)
			}
		}
	}
	for _, name := range []string{"X-IATP-Caller-ID", "Content-Type", "Accept", "X-Agent-Trace", "Signatures", ""} {
		if IsOwned(name) {
			t.Errorf("IsOwned(%q) = true", name)
		}
	}
	// Every credential is owned: a repeated credential is refused too.
	for _, name := range Credentials {
		if !IsOwned(name) {
			t.Errorf("credential %s is not owned", name)
		}
	}
}

func TestIsCredential(t *testing.T) {
	for name, want := range map[string]bool{
		"X-User-Override":    true,
		"x_user_override":    true,
		"Authorization":      true,
		"Signature":          true,
		"signature-input":    true,
		"X-IATP-Attestation": true,
		"Content-Digest":     false,
		"X-Agent-Trace-ID":   false,
		"X-Forwarded-For":    false,
	} {
		if got := IsCredential(name); got != want {
			t.Errorf("IsCredential(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestConnectionTokens(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"close", []string{"close"}},
		{"keep-alive, X-Secret", []string{"keep-alive", "X-Secret"}},
		{" , X-A ,,X-B, ", []string{"X-A", "X-B"}},
		{"", nil},
	}
	for _, tt := range tests {
		var got []string
		ConnectionTokens(tt.in, func(n string) { got = append(got, n) })
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("ConnectionTokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckTraceID(t *testing.T) {
	tests := []struct {
		name, id string
		want     string // fragment of the reason; "" means valid
	}{
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", ""},
		{"every allowed class", "aZ09._:-", ""},
		{"one char", "a", ""},
		{"128 chars", strings.Repeat("a", 128), ""},
		{"empty", "", "X-Agent-Trace-ID is empty"},
		{"129 chars", strings.Repeat("a", 129), "X-Agent-Trace-ID is 129 characters long; at most 128"},
		{"space", "a b", `X-Agent-Trace-ID holds ' ' at position 1`},
		{"slash", "a/b", `holds '/' at position 1`},
		{"semicolon", ";", `holds ';' at position 0`},
		{"at sign", "a@b.com", `holds '@' at position 1`},
		{"non-ascii", "é", `holds 'Ã' at position 0`},
		{"control", "a\x00", `holds '\x00' at position 1`},
		{"plus", "a+b", `holds '+'`},
		{"percent", "%41", `holds '%'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckTraceID(tt.id)
			if tt.want == "" {
				if got != "" {
					t.Errorf("CheckTraceID(%q) = %q, want valid", tt.id, got)
				}
			} else if !strings.Contains(got, tt.want) {
				t.Errorf("CheckTraceID(%q) = %q, want it to hold %q", tt.id, got, tt.want)
			}
			if valid := ValidTraceID(tt.id); valid != (got == "") {
				t.Errorf("ValidTraceID(%q) = %v, CheckTraceID says %q", tt.id, valid, got)
			}
		})
	}
}

func TestSplitProxy(t *testing.T) {
	tests := []struct {
		path string
		sub  string
		ok   bool
	}{
		{"/proxy", "", true},
		{"/proxy/", "/", true},
		{"/proxy/a/b", "/a/b", true},
		{"/proxy/a%2Fb", "/a%2Fb", true}, // CheckSubpath's to refuse
		{"/proxy//x", "//x", true},
		{"/proxyx", "", false},
		{"/proxy.json", "", false},
		{"/%70roxy", "", false},
		{"/Proxy", "", false},
		{"/PROXY/a", "", false},
		{"proxy", "", false},
		{"//proxy", "", false},
		{"", "", false},
		{"/", "", false},
		{"/health", "", false},
	}
	for _, tt := range tests {
		sub, ok := SplitProxy(tt.path)
		if sub != tt.sub || ok != tt.ok {
			t.Errorf("SplitProxy(%q) = %q, %v; want %q, %v", tt.path, sub, ok, tt.sub, tt.ok)
		}
	}
}

func TestCheckSubpath(t *testing.T) {
	const (
		dots      = "must not hold '.' or '..' segments"
		slash     = "must not hold encoded slashes"
		backslash = "holds a backslash"
		double    = "doubly encoded"
		control   = "control character"
		escape    = "malformed percent-escape"
	)
	tests := []struct {
		sub  string
		want string // fragment of the reason; "" means accepted
	}{
		{"", ""},
		{"/", ""},
		{"/a", ""},
		{"/a/b/c", ""},
		{"/a%20b", ""},
		{"/a;b", ""},
		{"/...", ""},
		{"/.a", ""},
		{"/a..", ""},
		{"/..a", ""},
		{"/a.b", ""},
		{"/%41", ""},
		{"/caf%C3%A9", ""},
		{"/a/", ""},
		{"//a", ""},
		{"/%25", ""},     // a literal '%'
		{"/%2541", ""},   // "%41" after decoding: not a separator
		{"/%25252e", ""}, // "%252e" after decoding: a second decoding gives "%2e", not "."
		{"/a;x=..", ""},  // ".." in a path parameter is not a segment
		{"/a?b", ""},     // a query is not part of the subpath
		{"/..", dots},
		{"/.", dots},
		{"/a/..", dots},
		{"/a/../b", dots},
		{"/a/./b", dots},
		{"/%2e%2e", dots},
		{"/%2E%2E", dots},
		{"/.%2e", dots},
		{"/%2e", dots},
		{"/..;x", dots},
		{"/..;", dots},
		{"/.;x", dots},
		{"/%2e%2e;x", dots},
		{"/%2e%2e%3bx", dots},
		{"/a%2Fb", slash},
		{"/a%2fb", slash},
		{"/%2F", slash},
		{"/a%5Cb", slash},
		{"/a%5cb", slash},
		{"/a\\b", backslash},
		{"/\\..", backslash},
		{"/%252e%252e", double},
		{"/%252E", double},
		{"/a%252Fb", double},
		{"/a%255cb", double},
		{"/a%00b", control},
		{"/a%0Ab", control},
		{"/a%0db", control},
		{"/a%7Fb", control},
		{"/a%1fb", control},
		{"/a\tb", control},
		{"/a%", escape},
		{"/a%2", escape},
		{"/a%zz", escape},
		{"/a%g0", escape},
		{"/%u002e%u002e", escape},
		{"/ok/%", escape},
	}
	for _, tt := range tests {
		got := CheckSubpath(tt.sub)
		switch {
		case tt.want == "" && got != "":
			t.Errorf("CheckSubpath(%q) = %q, want accepted", tt.sub, got)
		case tt.want != "" && !strings.Contains(got, tt.want):
			t.Errorf("CheckSubpath(%q) = %q, want it to hold %q", tt.sub, got, tt.want)
		}
	}
}
