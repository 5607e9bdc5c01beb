package frame

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// seedFrames are valid frames of every type, and a few broken ones.
func seedFrames(t testing.TB) [][]byte {
	m, _ := AppendMsg(nil, &msg)
	h := Hello{Nonce: [NonceLen]byte{1}, Sender: "researcher"}
	a := Accept{Nonce: [NonceLen]byte{2}, Receiver: "writer", MaxMessage: 1024, MaxBatch: 4, Signature: [SignatureLen]byte{3}}
	o := Open{Signature: [SignatureLen]byte{4}}
	s := Sig{Seq: 1, Signature: [SignatureLen]byte{5}}
	c := Close{Code: CodeProtocol, Reason: "bad frame"}
	return [][]byte{
		m, h.Append(nil), a.Append(nil), o.Append(nil), s.Append(nil), c.Append(nil),
		m[:len(m)-3],                             // cut short
		append(bytes.Clone(m[:HeaderLen]), 0xff), // body shorter than the header says
		{Version, byte(TypeMsg), 0, 0, 0xff, 0xff, 0xff, 0xff},
	}
}

// FuzzFrame parses one frame of any type: a frame the parser accepts must
// encode back to exactly the same bytes, so that two implementations
// cannot read one frame two ways.
func FuzzFrame(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, n, err := ParseHeader(b, 4096)
		if err != nil || len(b) < HeaderLen+n {
			return
		}
		frame, body := b[:HeaderLen+n], b[HeaderLen:HeaderLen+n]
		var re []byte
		switch typ {
		case TypeMsg:
			m, err := ParseMsg(body)
			if err != nil {
				return
			}
			if re, err = AppendMsg(nil, &m); err != nil {
				t.Fatalf("a parsed msg does not encode: %v", err)
			}
		case TypeHello:
			h, err := ParseHello(body)
			if err != nil {
				return
			}
			re = h.Append(nil)
		case TypeAccept:
			a, err := ParseAccept(body)
			if err != nil {
				return
			}
			re = a.Append(nil)
		case TypeOpen:
			o, err := ParseOpen(body)
			if err != nil {
				return
			}
			re = o.Append(nil)
		case TypeSig:
			s, err := ParseSig(body)
			if err != nil {
				return
			}
			re = s.Append(nil)
		case TypeClose:
			c, err := ParseClose(body)
			if err != nil {
				return
			}
			re = c.Append(nil)
		}
		if !bytes.Equal(re, frame) {
			t.Fatalf("%s frame\n%x\nencodes back as\n%x", typ, frame, re)
		}
	})
}

// FuzzServer feeds a receiver, after a valid handshake, with any stream of
// frames: it must never panic, and every message it delivers must come in
// order, from the peer, for the receiver, under a signature.
func FuzzServer(f *testing.F) {
	sc, stream := recordSession(f, 3, 16)
	hs := HeaderLen + NonceLen + 2 + len("researcher") + HeaderLen + SignatureLen
	prefix := stream[:hs]
	f.Add(stream[hs:])
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest []byte) {
		sc := sc
		sc.Rand = nonce(7)
		s, err := NewServer(rw{io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(rest)), io.Discard}, sc)
		if err != nil {
			t.Fatalf("the recorded handshake: %v", err)
		}
		want := uint64(1)
		for {
			batch, err := s.Next()
			if err != nil {
				return
			}
			for _, m := range batch {
				if m.Seq != want || m.Source != "researcher" || m.Target != "writer" {
					t.Fatalf("delivered seq %d from %q to %q, want seq %d from researcher to writer", m.Seq, m.Source, m.Target, want)
				}
				want++
			}
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpus of FuzzFrame and FuzzServer to
// testdata/fuzz when IATP_WRITE_FUZZ_SEEDS is set:
//
//	IATP_WRITE_FUZZ_SEEDS=1 go test ./pipe/frame -run TestWriteFuzzSeeds
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("IATP_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set IATP_WRITE_FUZZ_SEEDS=1 to write the seed corpus")
	}
	_, stream := recordSession(t, 3, 16)
	hs := HeaderLen + NonceLen + 2 + len("researcher") + HeaderLen + SignatureLen
	names := []string{"msg", "hello", "accept", "open", "sig", "close", "msg-cut", "msg-short-body", "msg-huge-length"}
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seedFrames(t) {
		write("FuzzFrame", names[i], s)
		write("FuzzServer", names[i], s)
	}
	write("FuzzServer", "session", stream[hs:])
}
