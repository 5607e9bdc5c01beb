package detect

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestPooledParserBounded feeds a parser a document built to make its
// buffers grow (a 1 MiB string full of escapes, 100,000 levels of nesting)
// and checks that what goes back to the pool is bounded.
func TestPooledParserBounded(t *testing.T) {
	huge := `["` + strings.Repeat(`\n`, 1<<19) + `", ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `]`
	p := getParser([]byte(huge), Options{MaxDepth: 200000})
	if err := p.parse(); err != nil {
		t.Fatal(err)
	}
	if cap(p.buf) <= poolMaxBuf || len(p.objects) <= poolMaxLevels {
		t.Fatalf("the document did not grow the buffers (buf %d, levels %d words)", cap(p.buf), len(p.objects))
	}
	p.reset()
	if cap(p.buf) > poolMaxBuf || len(p.objects) > poolMaxLevels || p.doc != nil || p.det.out != nil || p.det.src != nil {
		t.Errorf("after reset: buf cap %d (max %d), levels %d words (max %d), doc or output still held",
			cap(p.buf), poolMaxBuf, len(p.objects), poolMaxLevels)
	}
	putParser(p)
}

// adversarial inputs aim at the detectors' look-behind and look-ahead; each
// must take linear time (a quadratic one would not finish), and the text
// ones must find exactly what the byte-by-byte reference finds.
func adversarial() map[string][]byte {
	const n = 1 << 19
	rep := func(s string) []byte { return bytes.Repeat([]byte(s), n/len(s)) }
	return map[string][]byte{
		"ats":               rep("@"),
		"local parts":       rep("a.b_c%d+e-f"),
		"at then domain":    append(rep("a@b.c"), 'x'),
		"pem begins":        rep("-----BEGIN PRIVATE KEY-----\n"),
		"pem ends":          rep("-----END PRIVATE KEY-----"),
		"dashes":            rep("-"),
		"digit groups":      rep("4532 "),
		"dash groups":       rep("4532-"),
		"ssn-like":          rep("123-45-"),
		"long digit run":    rep("4"),
		"long token":        rep("Zm9vYmFy+/"),
		"jwt-like":          rep("eyJhbGciOi."),
		"jwt header runs":   rep("eyJhbGciOi-"),
		"jwt payload runs":  append([]byte("eyJhbGciOiJI."), rep("eyJhbGciOi_")...),
		"prefixes":          rep("sk-ghp_xoxb-AKIA"),
		"alternating words": rep("a1 "),
		"one-digit groups":  rep("4 "),
		"dot groups":        rep("45.3"),
		"nbsp groups":       rep("4532\u00a0"),
		"unicode dashes":    rep("1–"),
		"full-width digits": rep("４"),
		"uuid-like digits":  rep("45320151-1283-0366-0000-123456789012 "),
		"ssn-like spaces":   rep("123 45 "),
	}
}

func TestAdversarialInputs(t *testing.T) {
	for name, in := range adversarial() {
		t.Run(name, func(t *testing.T) {
			want, wantSet := refScrub(nil, in)
			got, set := ScrubText(nil, in)
			if set != wantSet || !bytes.Equal(got, want) {
				t.Errorf("ScrubText disagrees with the reference (%v vs %v)", set, wantSet)
			}
			doc := append(append([]byte(`"`), bytes.ReplaceAll(in, []byte("\n"), []byte(`\n`))...), '"')
			if _, err := ScanJSON(doc, Options{}); err != nil {
				t.Errorf("ScanJSON: %v", err)
			}
		})
	}
}

func BenchmarkAdversarial(b *testing.B) {
	for name, in := range adversarial() {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			m := startCPU(b, len(in))
			for b.Loop() {
				ScanText(in)
			}
			m.stop()
		})
	}
}

// TestConcurrentUse runs ScanJSON, ScrubJSON and ScrubText from many
// goroutines at once (run with -race): the pooled parsers must not leak
// state from one call into another.
func TestConcurrentUse(t *testing.T) {
	docs := [][]byte{request1K(), []byte(`{"a": "plain text, nothing here"}`), []byte(`["\u0034532015112830366"]`), []byte(`[1,]`)}
	want := make([][]byte, len(docs))
	wantSet := make([]Set, len(docs))
	for k, doc := range docs {
		want[k], wantSet[k], _ = ScrubJSON(nil, doc, Options{})
	}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func(g int) {
			for k := 0; k < 200; k++ {
				i := (g + k) % len(docs)
				out, set, err := ScrubJSON(nil, docs[i], Options{})
				if s, _ := ScanJSON(docs[i], Options{}); !bytes.Equal(out, want[i]) || set != wantSet[i] || s != set && err == nil {
					done <- fmt.Errorf("goroutine %d: document %d scrubbed to %q, %v", g, i, out, set)
					return
				}
				if text, s := ScrubText(nil, docs[i]); s != ScanText(docs[i]) || len(text) == 0 {
					done <- fmt.Errorf("goroutine %d: ScrubText and ScanText disagree on document %d", g, i)
					return
				}
			}
			done <- nil
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestNoAllocs checks that scanning and scrubbing allocate nothing once
// the pools are warm, Unicode input included (texts up to 64 KiB).
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	req := request1K()
	uni := []byte(`{"card": "４５３２ ０１５１ １２８３ ０３６６", "ssn": "123\u201345\u20136789", "n": 4.532015112830366e15, "k\u00a0": "\u0034"}`)
	text := []byte("card 4532\u00a00151\u00a01283\u00a00366 for ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ, ssn 123 45 6789")
	dst := make([]byte, 0, 4096)
	for name, f := range map[string]func(){
		"ScanJSON":          func() { ScanJSON(req, Options{}) },
		"ScrubJSON":         func() { ScrubJSON(dst[:0], req, Options{}) },
		"ParseJSON":         func() { ParseJSON(dst[:0], req, Options{}) },
		"ScanJSON unicode":  func() { ScanJSON(uni, Options{}) },
		"ScrubJSON unicode": func() { ScrubJSON(dst[:0], uni, Options{}) },
		"ScanText unicode":  func() { ScanText(text) },
		"ScrubText unicode": func() { ScrubText(dst[:0], text) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}
