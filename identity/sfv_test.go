package identity

import (
	"strings"
	"testing"
)

func TestParseDictionary(t *testing.T) {
	rows := []struct {
		name      string
		in        string
		want      string // re-serialized members joined by ", "; "" when an error is expected
		fragments []string
	}{
		{"signature input", `iatp=("@method" "content-digest");created=1;keyid="a";alg="ed25519"`, `iatp=("@method" "content-digest");created=1;keyid="a";alg="ed25519"`, nil},
		{"two members and OWS", "a=1 ,\tb=:AAAA:", `a=1, b=:AAAA:`, nil},
		{"boolean member and params", `a;x;y=?0, b=?1`, `a;x;y=?0, b`, nil},
		{"tokens and escapes", `a=tok/en:x, b="q\"\\"`, `a=tok/en:x, b="q\"\\"`, nil},
		{"inner list with item params", `a=("x";p=1 "y");q`, `a=("x";p=1 "y");q`, nil},
		{"empty inner list", `a=()`, `a=()`, nil},
		{"negative integer", `a=-15`, `a=-15`, nil},
		{"empty byte sequence", `a=::`, `a=::`, nil},
		{"surrounding spaces", `  a=1  `, `a=1`, nil},
		{"empty", ``, "", []string{"empty dictionary"}},
		{"uppercase key", `A=1`, "", []string{"lowercase"}},
		{"duplicate key", `a=1, a=2`, "", []string{`duplicate key "a"`}},
		{"duplicate parameter", `a=1;p=1;p=2`, "", []string{`duplicate parameter "p"`}},
		{"trailing comma", `a=1,`, "", []string{"trailing comma"}},
		{"missing comma", `a=1 b=2`, "", []string{"expected ','"}},
		{"unterminated string", `a="x`, "", []string{"unterminated string"}},
		{"bad escape", `a="\n"`, "", []string{"bad escape"}},
		{"control character in string", "a=\"\x01\"", "", []string{"non-printable"}},
		{"non-ASCII in string", "a=\"é\"", "", []string{"non-printable"}},
		{"unterminated inner list", `a=("x"`, "", []string{"unterminated inner list"}},
		{"inner list without separator", `a=("x""y")`, "", []string{"expected ' ' or ')'"}},
		{"byte sequence unpadded", `a=:AAA:`, "", []string{"canonical padded base64"}},
		{"byte sequence non-canonical bits", `a=:AAB=:`, "", []string{"canonical padded base64"}},
		{"byte sequence base64url", `a=:-_8=:`, "", []string{"canonical padded base64"}},
		{"unterminated byte sequence", `a=:AAAA`, "", []string{"unterminated byte sequence"}},
		{"integer too long", `a=1234567890123456`, "", []string{"more than 15 digits"}},
		{"decimal too many fraction digits", `a=1.2345`, "", []string{"1 to 3 fraction digits"}},
		{"decimal without fraction", `a=1.`, "", []string{"1 to 3 fraction digits"}},
		{"bare minus", `a=-`, "", []string{"without digits"}},
		{"bad boolean", `a=?2`, "", []string{"?0 or ?1"}},
		{"missing value", `a=`, "", []string{"missing value"}},
		{"date item (RFC 9651) unsupported", `a=@1`, "", []string{"unexpected character"}},
		{"too long", "a=" + strings.Repeat("1", MaxStructuredFieldBytes), "", []string{"longer than"}},
		{"too many members", strings.Repeat("a=1, ", maxSFMembers) + "zz=1", "", nil},
		{"too many inner items", "a=(" + strings.Repeat(`"x" `, maxSFInnerItems+1) + ")", "", []string{"more than 64 items"}},
		{"too many params", "a" + strings.Repeat(";p", maxSFParams+1), "", nil},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			members, err := parseDictionary(r.in)
			if r.want == "" {
				wantErr(t, err, ErrMalformed, r.fragments...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := serializeDictionary(t, members); got != r.want {
				t.Fatalf("got %s, want %s", got, r.want)
			}
		})
	}
}

// serializeDictionary writes members back (RFC 8941 section 4.1.2).
func serializeDictionary(t testing.TB, members []sfMember) string {
	t.Helper()
	var parts []string
	for _, m := range members {
		b := []byte(m.key)
		var err error
		switch {
		case m.inner:
			b = append(b, '=')
			b, err = appendSFInnerList(b, m.list, m.params)
		case m.item.kind == sfBoolean && m.item.boolean:
			b, err = appendSFParams(b, m.params)
		case m.item.kind == sfDecimal:
			b = append(b, '=')
			b = append(b, m.item.str...)
			b, err = appendSFParams(b, m.params)
		default:
			b = append(b, '=')
			if b, err = appendSFItem(b, m.item); err == nil {
				b, err = appendSFParams(b, m.params)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	return strings.Join(parts, ", ")
}
