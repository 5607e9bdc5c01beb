package pipeline

import (
	"bufio"
	"crypto/rand"
	"sync"

	"github.com/google/uuid"
)

// pooledRand reads crypto/rand 4 KiB at a time: a trace id is made for most
// requests, and one getrandom(2) per 256 of them instead of one each is
// measurable on the hot path. The bytes are as random as crypto/rand's.
var pooledRand = struct {
	sync.Mutex
	r *bufio.Reader
}{r: bufio.NewReaderSize(rand.Reader, 4096)}

type lockedReader struct{}

func (lockedReader) Read(p []byte) (int, error) {
	pooledRand.Lock()
	defer pooledRand.Unlock()
	return pooledRand.r.Read(p)
}

// NewTraceID returns a random UUID (version 4) string.
func NewTraceID() string {
	id, err := uuid.NewRandomFromReader(lockedReader{})
	if err != nil {
		panic("iatp: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return id.String()
}
