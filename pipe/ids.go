package pipe

import (
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
)

// ids makes message and trace ids: random (version 4) UUIDs from a
// ChaCha8 stream seeded by crypto/rand — unpredictable and never derived
// from the time. Each link has its own, so making an id takes no lock.
type ids struct {
	r *mrand.ChaCha8
}

func newIDs() ids {
	var seed [32]byte
	rand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms
	return ids{mrand.NewChaCha8(seed)}
}

// next returns a new id.
func (g ids) next() string {
	var u [16]byte
	g.r.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
