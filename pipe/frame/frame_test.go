package frame

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
)

func key(t testing.TB, seed byte) identity.PrivateKey {
	t.Helper()
	k, err := identity.PrivateKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var msg = Msg{Seq: 7, ID: "0b6f1f7e-4a37-4c1e-9d8a-2b8f0c9d1e2f", TraceID: "trace-1", Source: "researcher", Target: "writer",
	Type: "example.Note", Payload: []byte(`{"text":"hello"}`)}

func TestMsgRoundTrip(t *testing.T) {
	f, err := AppendMsg([]byte("prefix"), &msg)
	if err != nil {
		t.Fatal(err)
	}
	f = f[len("prefix"):]
	typ, n, err := ParseHeader(f, 1024)
	if err != nil || typ != TypeMsg || n != len(f)-HeaderLen {
		t.Fatalf("ParseHeader = %v %d %v", typ, n, err)
	}
	got, err := ParseMsg(f[HeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, msg) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, msg)
	}
	SetSeq(f, 9)
	if got, _ := ParseMsg(f[HeaderLen:]); got.Seq != 9 {
		t.Errorf("SetSeq: seq %d", got.Seq)
	}
}

func TestControlRoundTrips(t *testing.T) {
	h := Hello{Nonce: [NonceLen]byte{1, 2}, Sender: "researcher"}
	a := Accept{Nonce: [NonceLen]byte{3}, Receiver: "writer", MaxMessage: 1 << 20, MaxBatch: 64, Signature: [SignatureLen]byte{9}}
	o := Open{Signature: [SignatureLen]byte{5}}
	s := Sig{Seq: 42, Signature: [SignatureLen]byte{6}}
	c := Close{Code: CodeProtocol, Reason: "bad"}
	for _, tt := range []struct {
		frame []byte
		typ   Type
		parse func([]byte) (any, error)
		want  any
	}{
		{h.Append(nil), TypeHello, func(b []byte) (any, error) { return ParseHello(b) }, h},
		{a.Append(nil), TypeAccept, func(b []byte) (any, error) { return ParseAccept(b) }, a},
		{o.Append(nil), TypeOpen, func(b []byte) (any, error) { return ParseOpen(b) }, o},
		{s.Append(nil), TypeSig, func(b []byte) (any, error) { return ParseSig(b) }, s},
		{c.Append(nil), TypeClose, func(b []byte) (any, error) { return ParseClose(b) }, c},
	} {
		t.Run(tt.typ.String(), func(t *testing.T) {
			typ, n, err := ParseHeader(tt.frame, 0)
			if err != nil || typ != tt.typ || n != len(tt.frame)-HeaderLen {
				t.Fatalf("ParseHeader = %v %d %v", typ, n, err)
			}
			got, err := tt.parse(tt.frame[HeaderLen:])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if _, err := tt.parse(append(tt.frame[HeaderLen:len(tt.frame):len(tt.frame)], 0)); tt.typ != TypeClose && err == nil {
				t.Error("a trailing byte was accepted")
			}
		})
	}
}

func TestParseHeaderRefuses(t *testing.T) {
	valid := AppendHeader(nil, TypeMsg, 100)
	for _, tt := range []struct {
		name string
		edit func(h []byte)
		want string
	}{
		{"version", func(h []byte) { h[0] = 2 }, "version 2"},
		{"type zero", func(h []byte) { h[1] = 0 }, "unknown frame type 0"},
		{"type seven", func(h []byte) { h[1] = 7 }, "unknown frame type 7"},
		{"flags", func(h []byte) { h[3] = 1 }, "flags 0x0001"},
		{"msg over the limit", func(h []byte) { h[4], h[5] = 1, 0 }, "over the limit"},
		{"control over the limit", func(h []byte) { h[1], h[6] = byte(TypeSig), 0x10 }, "sig frame of 4196 bytes, over the limit of 4096"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := bytes.Clone(valid)
			tt.edit(h)
			_, _, err := ParseHeader(h, 1024)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseHeader = %v, want %q", err, tt.want)
			}
		})
	}
	if _, _, err := ParseHeader(valid[:7], 1024); !errors.Is(err, ErrProtocol) {
		t.Errorf("a short header: %v", err)
	}
}

func TestParseMsgRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(m *Msg)
		want string
	}{
		{"empty id", func(m *Msg) { m.ID = "" }, "id"},
		{"id with a space", func(m *Msg) { m.ID = "a b" }, "id"},
		{"long trace id", func(m *Msg) { m.TraceID = strings.Repeat("t", 129) }, "trace id of 129 bytes"},
		{"empty source", func(m *Msg) { m.Source = "" }, "source of 0 bytes"},
		{"control in target", func(m *Msg) { m.Target = "wri\x00ter" }, "target holds a control character"},
		{"C1 control in type", func(m *Msg) { m.Type = "a\u0085b" }, "type holds a control character"},
		{"invalid utf-8 in source", func(m *Msg) { m.Source = "\xff" }, "source is not UTF-8"},
		{"long type", func(m *Msg) { m.Type = strings.Repeat("x", 257) }, "type of 257 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := msg
			tt.edit(&m)
			if _, err := AppendMsg(nil, &m); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AppendMsg = %v, want %q", err, tt.want)
			}
			// The same bytes, built by hand, are refused by the parser.
			body := appendUnchecked(&m)
			if _, err := ParseMsg(body); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseMsg = %v, want %q", err, tt.want)
			}
		})
	}
	f, _ := AppendMsg(nil, &msg)
	for n := range 8 + 10 {
		if _, err := ParseMsg(f[HeaderLen : HeaderLen+n]); !errors.Is(err, ErrProtocol) {
			t.Errorf("a body cut at %d bytes: %v", n, err)
		}
	}
}

// appendUnchecked encodes m's body without validating it.
func appendUnchecked(m *Msg) []byte {
	b := make([]byte, 8)
	for _, s := range [...]string{m.ID, m.TraceID, m.Source, m.Target, m.Type} {
		b = appendStr(b, s)
	}
	return append(b, m.Payload...)
}

// connPair returns the two ends of a Unix domain socket, which buffer
// like the connections pipes run over (net.Pipe does not).
func connPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "frame")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// pair runs the handshake over a socket.
func pair(t testing.TB, sc ServerConfig, cc ClientConfig) (*Client, *Server, net.Conn, net.Conn, error, error) {
	t.Helper()
	a, b := connPair(t)
	type res struct {
		s   *Server
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := NewServer(b, sc)
		if err != nil {
			b.Close()
		}
		ch <- res{s, err}
	}()
	c, cerr := NewClient(a, cc)
	if cerr != nil {
		a.Close()
	}
	r := <-ch
	return c, r.s, a, b, cerr, r.err
}

func configs(t testing.TB) (ServerConfig, ClientConfig) {
	sk, ck := key(t, 1), key(t, 2)
	return ServerConfig{Agent: "writer", Key: sk, Peers: map[string]ed25519.PublicKey{"researcher": ck.PublicKey()}, MaxMessage: 1024, MaxBatch: 4},
		ClientConfig{Agent: "researcher", Key: ck, Receiver: "writer", ReceiverKey: sk.PublicKey()}
}

func TestSession(t *testing.T) {
	sc, cc := configs(t)
	c, s, _, _, cerr, serr := pair(t, sc, cc)
	if cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if c.Handshake() != s.Handshake() {
		t.Fatalf("the two sides disagree:\n%+v\n%+v", c.Handshake(), s.Handshake())
	}
	go func() {
		for i := range 6 {
			m := msg
			m.Payload = []byte{'0' + byte(i)}
			f, _ := AppendMsg(nil, &m)
			f[SeqOffset] = 0xff // the client sets the number
			if err := c.WriteMsg(f); err != nil {
				t.Error(err)
			}
			if i == 2 {
				c.Sign()
			}
		}
		c.Close(CodeNormal, "done")
	}()
	var got []string
	for {
		batch, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			got = append(got, string(m.Payload)+"@"+string('0'+byte(m.Seq)))
		}
	}
	if want := []string{"0@1", "1@2", "2@3", "3@4", "4@5", "5@6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
}

func TestHandshakeRefuses(t *testing.T) {
	for _, tt := range []struct {
		name       string
		edit       func(sc *ServerConfig, cc *ClientConfig)
		wantClient string
		wantServer string
	}{
		{"sender not a peer", func(sc *ServerConfig, cc *ClientConfig) { cc.Agent = "stranger" },
			`agent "stranger" is not a peer of "writer"`, `agent "stranger" is not a peer of "writer"`},
		{"sender key not the pinned one", func(sc *ServerConfig, cc *ClientConfig) { cc.Key = key(t, 3) },
			"", `the open of "researcher" is not signed by its key`},
		{"receiver key not the pinned one", func(sc *ServerConfig, cc *ClientConfig) { sc.Key = key(t, 3) },
			`the accept of "writer" is not signed by its pinned key`, ""},
		{"another receiver", func(sc *ServerConfig, cc *ClientConfig) { cc.Receiver = "editor" },
			`the receiver is "writer", not "editor"`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc, cc := configs(t)
			tt.edit(&sc, &cc)
			_, _, _, _, cerr, serr := pair(t, sc, cc)
			if tt.wantClient != "" && (!errors.Is(cerr, ErrRefused) || !strings.Contains(cerr.Error(), tt.wantClient)) {
				t.Errorf("client: %v, want %q", cerr, tt.wantClient)
			}
			if tt.wantServer != "" && (!errors.Is(serr, ErrRefused) || !strings.Contains(serr.Error(), tt.wantServer)) {
				t.Errorf("server: %v, want %q", serr, tt.wantServer)
			}
			if cerr == nil && serr == nil {
				t.Error("the handshake succeeded")
			}
		})
	}
}

func nonce(b byte) io.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, NonceLen)) }

// recordSession returns the bytes a client writes for msgs messages,
// signed in one batch at its close, after a handshake with a server of
// the returned config whose nonce is all 7s.
func recordSession(t testing.TB, msgs, maxBatch int) (ServerConfig, []byte) {
	t.Helper()
	sc, cc := configs(t)
	sc.MaxBatch = maxBatch
	cc.Rand = nonce(8)
	a, b := connPair(t)
	live := sc
	live.Rand = nonce(7)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.Close()
		if s, err := NewServer(b, live); err == nil {
			for err == nil {
				_, err = s.Next()
			}
		}
		io.Copy(io.Discard, b)
	}()
	var rec bytes.Buffer
	c, err := NewClient(teeConn{a, &rec}, cc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		m := msg
		m.Payload = []byte(`{"n":` + string('0'+byte(i%10)) + `}`)
		f, _ := AppendMsg(nil, &m)
		if err := c.WriteMsg(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(CodeNormal, "done"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	<-done
	return sc, rec.Bytes()
}

// teeConn copies what is written to w.
type teeConn struct {
	net.Conn
	w io.Writer
}

func (c teeConn) Write(p []byte) (int, error) {
	c.w.Write(p)
	return c.Conn.Write(p)
}

// serverOver runs a server whose nonce is all b over a recorded client
// stream and returns the messages it delivers and how it ended.
func serverOver(sc ServerConfig, b byte, stream []byte) ([]Msg, error) {
	sc.Rand = nonce(b)
	s, err := NewServer(rw{bytes.NewReader(stream), io.Discard}, sc)
	if err != nil {
		return nil, err
	}
	var out []Msg
	for {
		batch, err := s.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
		for _, m := range batch {
			m.Payload = bytes.Clone(m.Payload)
			out = append(out, m)
		}
	}
}

type rw struct {
	io.Reader
	io.Writer
}

func TestServerRefusesTamperedStreams(t *testing.T) {
	sc, stream := recordSession(t, 3, 16)
	got, err := serverOver(sc, 7, stream)
	if err != nil || len(got) != 3 {
		t.Fatalf("the recorded stream: %d messages, %v", len(got), err)
	}
	hello := HeaderLen + NonceLen + 2 + len("researcher")
	open := HeaderLen + SignatureLen
	first := hello + open // the first msg frame
	flen := HeaderLen + int(uint32(stream[first+4])<<24|uint32(stream[first+5])<<16|uint32(stream[first+6])<<8|uint32(stream[first+7]))
	for _, tt := range []struct {
		name string
		edit func(s []byte) []byte
		want string
	}{
		{"a payload byte changed", func(s []byte) []byte { s[first+flen-2] ^= 1; return s }, "does not verify"},
		{"a message dropped", func(s []byte) []byte { return append(s[:first:first], s[first+flen:]...) }, "msg 2 where 1 was due"},
		{"the sig dropped", func(s []byte) []byte {
			end := first + 3*flen
			return append(s[:end:end], s[end+HeaderLen+8+SignatureLen:]...)
		}, "closed with 3 unsigned messages"},
		{"the stream cut before the sig", func(s []byte) []byte { return s[:first+3*flen] }, "unexpected EOF"},
		{"a frame of another version", func(s []byte) []byte { s[first] = 2; return s }, "version 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serverOver(sc, 7, tt.edit(bytes.Clone(stream)))
			if len(got) != 0 {
				t.Errorf("%d messages delivered", len(got))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Next = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("a replay to a new connection", func(t *testing.T) {
		got, err := serverOver(sc, 9, stream) // the receiver's nonce is fresh
		if len(got) != 0 || !errors.Is(err, ErrRefused) {
			t.Errorf("replayed: %d messages, %v; want the open refused", len(got), err)
		}
	})
}

func TestServerLimits(t *testing.T) {
	sc, stream := recordSession(t, 5, 4)
	if got, err := serverOver(sc, 7, stream); len(got) != 0 || !strings.Contains(fmt.Sprint(err), "more than 4 messages") {
		t.Errorf("5 messages before a sig with a limit of 4: %d delivered, %v", len(got), err)
	}
}
