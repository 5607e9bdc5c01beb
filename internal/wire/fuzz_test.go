package wire

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckSubpath checks CheckSubpath never panics and that a path it
// accepts, read by an agent that percent-decodes it once or even twice,
// holds no dot segment (path parameters after ';' set aside), no slash or
// backslash inside a segment, and no control character.
func FuzzCheckSubpath(f *testing.F) {
	for _, s := range []string{"", "/", "/a/b", "/..", "/%2e%2e", "/..;x", "/a%2Fb", "/a%5C", "/a\\b",
		"/%252e%252e", "/a%00", "/a%", "/a%zz", "/a%20b", "/%25252e", "//", "/a;b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sub string) {
		if !strings.HasPrefix(sub, "/") && sub != "" {
			sub = "/" + sub
		}
		if CheckSubpath(sub) != "" || sub == "" {
			return
		}
		for seg := range strings.SplitSeq(sub[1:], "/") {
			once, err := url.PathUnescape(seg)
			if err != nil {
				t.Fatalf("accepted %q: segment %q is not a valid escape: %v", sub, seg, err)
			}
			views := []string{once}
			if twice, err := url.PathUnescape(once); err == nil {
				views = append(views, twice)
			}
			for _, v := range views {
				name, _, _ := strings.Cut(v, ";")
				if name == "." || name == ".." {
					t.Fatalf("accepted %q: segment %q reads as %q", sub, seg, name)
				}
				if strings.ContainsAny(v, "/\\") {
					t.Fatalf("accepted %q: segment %q reads as %q, which holds a separator", sub, seg, v)
				}
			}
			for i := 0; i < len(once); i++ {
				if once[i] < 0x20 || once[i] == 0x7f {
					t.Fatalf("accepted %q: control character in %q", sub, once)
				}
			}
		}
	})
}
