package frame

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"testing"

	"github.com/iatp/iatp/identity"
)

// TestVectors pins the test vectors docs/pipes.md gives implementers in
// other languages: change one, and the document must change with it.
func TestVectors(t *testing.T) {
	seq := func(from byte) (n [NonceLen]byte) {
		for i := range n {
			n[i] = from + byte(i)
		}
		return n
	}
	hs := Handshake{SenderNonce: seq(0), ReceiverNonce: seq(0x20), Sender: "researcher", Receiver: "writer", MaxMessage: 1 << 20, MaxBatch: 1024}
	sender, _ := identity.PrivateKeyFromSeed(bytes.Repeat([]byte{0x01}, ed25519.SeedSize))
	receiver, _ := identity.PrivateKeyFromSeed(bytes.Repeat([]byte{0x02}, ed25519.SeedSize))
	sign := func(k identity.PrivateKey, msg []byte) string {
		s, err := k.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(s)
	}
	m := Msg{Seq: 1, ID: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", TraceID: "trace-1", Source: "researcher", Target: "writer",
		Type: "example.pipes.Note", Payload: []byte(`{"topic":"tides","text":"hi"}`)}
	f, _ := AppendMsg(nil, &m)
	c := hs.Chain()
	h0 := c.Sum()
	c.Add(f)
	h1 := c.Sum()
	for name, got := range map[string]string{
		"sender public key":   hex.EncodeToString(sender.PublicKey()),
		"receiver public key": hex.EncodeToString(receiver.PublicKey()),
		"accept signed":       hex.EncodeToString(hs.AcceptSigned()),
		"accept signature":    sign(receiver, hs.AcceptSigned()),
		"open signature":      sign(sender, hs.OpenSigned()),
		"chain start":         hex.EncodeToString(h0[:]),
		"chain after msg 1":   hex.EncodeToString(h1[:]),
		"sig signed":          hex.EncodeToString(c.SigSigned()),
		"sig signature":       sign(sender, c.SigSigned()),
	} {
		t.Logf("%s: %s", name, got)
		if want := vectors[name]; got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

var vectors = map[string]string{
	"sender public key":   "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
	"receiver public key": "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
	"accept signed": "696174702d706970652f312061636365707400" + // "iatp-pipe/1 accept\x00"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" + // sender nonce
		"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" + // receiver nonce
		"000a72657365617263686572" + "0006777269746572" + // "researcher", "writer"
		"00100000" + "00000400", // 1 MiB, 1024 messages
	"accept signature":  "ababd4e62b411fbfaae516bc267ad13a9f6d687991e42bee8d686a60aaa900c08e27873da34190fbf29ad3dae54e29a169a188ba05002d31fba47dc5688b360d",
	"open signature":    "7ce08c476006b8ffa34f4b9c364e03e259a006cf7fa15b2cc7cc78f3ff8d95b375ea508d56c3ffabb60740a31748298e250a38b3f0d1ca4485a17f2b9d32d10a",
	"chain start":       "ffe0ac3b3fca15c168fe874a31ee5b5e1ff26b9d87d9b7e40c7eaccbb694b596",
	"chain after msg 1": "7c7371011655d9f58397125b3b9d19645c879cfb28fb93552174845c7f59a3f6",
	"sig signed":        "696174702d706970652f3120736967007c7371011655d9f58397125b3b9d19645c879cfb28fb93552174845c7f59a3f60000000000000001",
	"sig signature":     "6a39938f4a8454e97ecf9305b17eabb7926fe118bb8351ff76b28015c2e72a056b1ceb5bd8507cd0ddda55a6ca74e10700e886129cec35a58ca1fe394ed2ff03",
}
