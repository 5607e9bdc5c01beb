package recorder

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Checkpoint is a signed statement that the log held record Seq, whose hash
// is Hash, at Time. Checkpoints are appended to checkpoints.jsonl in the
// recorder directory, outside the segments, so cutting records off the end
// of the log is detectable as long as a later checkpoint survives.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	PublicKey string    `json:"public_key"` // "ed25519:" + base64 of the 32-byte key
	Signature string    `json:"signature"`  // base64 of the Ed25519 signature
}

// checkpointDomain separates checkpoint signatures from anything else the
// key might sign.
const checkpointDomain = "iatp-recorder-checkpoint-v1\n"

// maxCheckpoints bounds the checkpoint file read into memory.
const maxCheckpoints = 1 << 20

// message returns the bytes a checkpoint signature covers:
// domain, seq, hash, time (RFC 3339, UTC) and key id, one per line.
func (c *Checkpoint) message() []byte {
	b := []byte(checkpointDomain)
	b = strconv.AppendUint(b, c.Seq, 10)
	b = append(b, '\n')
	b = append(b, c.Hash...)
	b = append(b, '\n')
	b = c.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '\n')
	b = append(b, c.KeyID...)
	return append(b, '\n')
}

// publicKeyString renders a public key as checkpoints hold it.
func publicKeyString(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}

// signCheckpoint signs a checkpoint of t at now with an Ed25519 signer
// (checked by Config.withDefaults).
func signCheckpoint(key crypto.Signer, keyID string, t tip, now time.Time) (Checkpoint, error) {
	c := Checkpoint{
		Seq: t.seq, Hash: string(t.hash[:]), Time: now.UTC().Round(0), KeyID: keyID,
		PublicKey: publicKeyString(key.Public().(ed25519.PublicKey)),
	}
	sig, err := key.Sign(nil, c.message(), crypto.Hash(0))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("recorder: sign checkpoint: %w", err)
	}
	c.Signature = base64.StdEncoding.EncodeToString(sig)
	return c, nil
}

// verify checks c's form and its signature against the public key it
// carries: that proves the checkpoint is intact, not who signed it (see
// signedBy).
func (c *Checkpoint) verify() error {
	if len(c.Hash) != hashHexLen || !lowerHex([]byte(c.Hash)) {
		return errors.New("hash is not 64 lowercase hex digits")
	}
	if c.Seq == 0 {
		return errors.New("seq is 0")
	}
	pub, err := c.publicKey()
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("signature is not a base64 Ed25519 signature")
	}
	if !ed25519.Verify(pub, c.message(), sig) {
		return errors.New("bad signature")
	}
	return nil
}

// publicKey decodes the key c carries.
func (c *Checkpoint) publicKey() (ed25519.PublicKey, error) {
	b64, ok := bytes.CutPrefix([]byte(c.PublicKey), []byte("ed25519:"))
	if !ok {
		return nil, errors.New(`public_key does not start with "ed25519:"`)
	}
	pub, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("public_key is not a base64 Ed25519 key")
	}
	return pub, nil
}

// signedBy reports whether c (verified) carries one of the keys.
func (c *Checkpoint) signedBy(keys []ed25519.PublicKey) bool {
	pub, err := c.publicKey()
	if err != nil {
		return false
	}
	for _, k := range keys {
		if bytes.Equal(k, pub) {
			return true
		}
	}
	return false
}

// firstUntrusted returns a *KeyError for the first checkpoint not signed by
// one of trusted, or nil when all are (or no key is given).
func firstUntrusted(cks []Checkpoint, trusted []ed25519.PublicKey) *KeyError {
	if len(trusted) == 0 {
		return nil
	}
	for i := range cks {
		if !cks[i].signedBy(trusted) {
			return &KeyError{Seq: cks[i].Seq, KeyID: cks[i].KeyID, PublicKey: cks[i].PublicKey}
		}
	}
	return nil
}

// parseCheckpoint decodes one checkpoint line, refusing unknown members.
func parseCheckpoint(line []byte) (Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("not a checkpoint: %w", err)
	}
	if dec.More() {
		return c, errors.New("not a checkpoint: trailing data")
	}
	return c, nil
}

// readCheckpoints reads and parses the checkpoint file at path (a missing
// file is no checkpoints). It returns the checkpoints, the offset after the
// last whole line, and the number of bytes after it (a torn last line).
// Problems are *VerifyError with ProblemCheckpoint; each signature is
// checked against the key the checkpoint carries (see Checkpoint.verify).
func readCheckpoints(path string) ([]Checkpoint, int64, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	lr := newLineReader(f, 0)
	lr.maxLine = 4096
	var out []Checkpoint
	for {
		line, off, err := lr.next()
		if err == io.EOF {
			return out, off, 0, nil
		}
		if errors.Is(err, errPartial) {
			return out, off, int64(len(line)), nil
		}
		bad := func(seq uint64, detail string) error {
			return &VerifyError{Segment: checkpointsFile, Seq: seq, Problem: ProblemCheckpoint,
				Detail: fmt.Sprintf("line at offset %d: %s", off, detail)}
		}
		if err != nil {
			return nil, 0, 0, bad(0, err.Error())
		}
		if len(out) >= maxCheckpoints {
			return nil, 0, 0, bad(0, fmt.Sprintf("more than %d checkpoints", maxCheckpoints))
		}
		c, err := parseCheckpoint(line)
		if err != nil {
			return nil, 0, 0, bad(0, err.Error())
		}
		if err := c.verify(); err != nil {
			return nil, 0, 0, bad(c.Seq, err.Error())
		}
		if n := len(out); n > 0 && c.Seq <= out[n-1].Seq {
			return nil, 0, 0, bad(c.Seq, fmt.Sprintf("out of order: seq %d follows seq %d", c.Seq, out[n-1].Seq))
		}
		out = append(out, c)
	}
}

// checkpointer writes the checkpoints of an open log.
type checkpointer struct {
	mu     sync.Mutex
	key    crypto.Signer
	keyID  string
	path   string
	f      *os.File // append handle
	last   Checkpoint
	lastAt time.Time // when the last checkpoint was written (or the log opened)
}

// write signs and appends a checkpoint of t and fsyncs it. Callers hold mu.
func (ck *checkpointer) write(t tip, now time.Time) error {
	c, err := signCheckpoint(ck.key, ck.keyID, t, now)
	if err != nil {
		return err
	}
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if ck.f == nil {
		if ck.f, err = os.OpenFile(ck.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return err
		}
	}
	if _, err := ck.f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := ck.f.Sync(); err != nil {
		return err
	}
	ck.last, ck.lastAt = c, now
	return nil
}

// compact rewrites the checkpoint file without the checkpoints of removed
// records (seq below keepFrom), always keeping the newest.
func (ck *checkpointer) compact(dir string, keepFrom uint64) error {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	all, _, _, err := readCheckpoints(ck.path)
	if err != nil || len(all) == 0 {
		return err
	}
	var buf []byte
	kept := 0
	for i, c := range all {
		if c.Seq < keepFrom && i < len(all)-1 {
			continue
		}
		line, err := json.Marshal(c)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
		kept++
	}
	if kept == len(all) {
		return nil
	}
	tmp := ck.path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if ck.f != nil {
		ck.f.Close()
		ck.f = nil
	}
	if err := os.Rename(tmp, ck.path); err != nil {
		return err
	}
	return syncDir(dir)
}

func (ck *checkpointer) close() error {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	if ck.f == nil {
		return nil
	}
	err := ck.f.Close()
	ck.f = nil
	return err
}

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// maybeCheckpoint writes a checkpoint of the last fsynced record when
// CheckpointEvery records or CheckpointInterval passed since the last one
// (or when force is set and there is anything new). A failure is logged and
// retried at the next tick: it weakens tail protection but loses no record.
func (l *Log) maybeCheckpoint(force bool) {
	ck := l.ck
	if ck == nil {
		return
	}
	l.stMu.Lock()
	s := l.synced
	l.stMu.Unlock()
	ck.mu.Lock()
	defer ck.mu.Unlock()
	if s.seq == 0 || s.seq <= ck.last.Seq {
		return
	}
	now := l.clock()
	if !force && s.seq-ck.last.Seq < uint64(l.cfg.CheckpointEvery) && now.Sub(ck.lastAt) < l.cfg.CheckpointInterval {
		return
	}
	if err := ck.write(s, now); err != nil {
		l.logger.Error("recorder: writing checkpoint", "dir", l.dir, "seq", s.seq, "err", err)
	}
}

// LastCheckpoint returns the newest checkpoint written or found at Open, and
// false if there is none. Operators who ship it elsewhere (a log collector,
// a transparency log) keep tail truncation detectable even if the whole
// recorder directory is rewritten.
func (l *Log) LastCheckpoint() (Checkpoint, bool) {
	if l.ck == nil {
		return Checkpoint{}, false
	}
	l.ck.mu.Lock()
	defer l.ck.mu.Unlock()
	return l.ck.last, l.ck.last.Seq != 0
}
