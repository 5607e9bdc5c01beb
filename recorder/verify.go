package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// TrustedKeys are the checkpoint keys to accept. Each checkpoint is
	// checked against the public key it carries, which proves it was not
	// damaged but not who signed it; with TrustedKeys, that key must also be
	// one of them, or Verify returns a *KeyError (ErrUntrustedKey). If empty,
	// VerifyReport.CheckpointsTrusted is false.
	TrustedKeys []ed25519.PublicKey
	// RequireCheckpoint fails a log that has no checkpoint at all.
	RequireCheckpoint bool
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Dir      string `json:"dir"`
	Segments int    `json:"segments"`
	Records  uint64 `json:"records"`
	// Bytes counts the bytes of the records (uncompressed); DiskBytes what
	// their segments take on disk, compressed ones as stored.
	Bytes     int64 `json:"bytes"`
	DiskBytes int64 `json:"disk_bytes"`
	// CompressedSegments counts the segments stored compressed.
	CompressedSegments int    `json:"compressed_segments"`
	FirstSeq           uint64 `json:"first_seq"`
	LastSeq            uint64 `json:"last_seq"`
	LastHash           string `json:"last_hash,omitempty"`
	// ChainStart says why the oldest record may start the chain: "genesis"
	// (seq 1), "recovery" (a new chain after --recorder-recover) or
	// "retention" (older segments removed, accounted for by a retention
	// record).
	ChainStart string `json:"chain_start,omitempty"`
	Retentions int    `json:"retention_records"`
	Recoveries int    `json:"recovery_records"`
	// Checkpoints counts checkpoints matched against records;
	// CheckpointsRemoved those of records removed by retention.
	Checkpoints        int         `json:"checkpoints"`
	CheckpointsRemoved int         `json:"checkpoints_removed"`
	CheckpointsTrusted bool        `json:"checkpoints_trusted"`
	LastCheckpoint     *Checkpoint `json:"last_checkpoint,omitempty"`
	// TornTailBytes counts bytes after the last newline of the last segment:
	// a crash mid-write (Open cuts them) or a write in progress.
	TornTailBytes int64 `json:"torn_tail_bytes,omitempty"`
	// Recovered lists recovered-* subdirectories: chains moved aside by
	// --recorder-recover. Verify them separately.
	Recovered []string     `json:"recovered,omitempty"`
	Problem   *VerifyError `json:"problem,omitempty"`
	// UntrustedKey is set when every record and checkpoint holds but a
	// checkpoint is signed by a key outside VerifyOptions.TrustedKeys.
	UntrustedKey *KeyError `json:"untrusted_key,omitempty"`
}

// Verify checks the whole log in dir (the recorder directory): every record's
// hash and canonical form, every link and seq, segment names, the start of
// the chain (seq 1, a recovery record, or the position the newest retention
// record names), and every checkpoint (signature, order, and the hash of the
// record it names; the log must reach the newest). It stops at the first
// problem, returned as a *VerifyError (wrapping ErrCorrupt) and also in the
// report. When everything holds but a checkpoint is signed by a key outside
// opts.TrustedKeys, it returns a *KeyError (ErrUntrustedKey), also in the
// report. It reads plain and compressed segments alike. It reads the log without locking it, so a sidecar may be writing;
// a partial last line is then reported as TornTailBytes, not as a problem.
// ErrNoLog if dir has neither segments nor checkpoints.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{Dir: dir, CheckpointsTrusted: len(opts.TrustedKeys) > 0}
	files, err := listSegments(dir)
	if errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("%w in %s", ErrNoLog, dir)
	}
	if err != nil {
		return rep, fmt.Errorf("recorder: verify: %w", err)
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), recoveredPrefix) {
				rep.Recovered = append(rep.Recovered, e.Name())
			}
		}
	}
	cks, _, _, err := readCheckpoints(segPath(dir, checkpointsFile))
	if err != nil {
		return rep.fail(err)
	}
	if len(files) == 0 && len(cks) == 0 {
		return rep, fmt.Errorf("%w in %s", ErrNoLog, dir)
	}
	if n := len(cks); n > 0 {
		rep.LastCheckpoint = &cks[n-1]
	}
	v := &verifier{rep: rep, cks: cks}
	for i, sf := range files {
		if err := v.segment(ctx, dir, sf, i == len(files)-1); err != nil {
			return rep.fail(err)
		}
	}
	if err := v.finish(opts); err != nil {
		return rep.fail(err)
	}
	if ke := firstUntrusted(cks, opts.TrustedKeys); ke != nil {
		rep.CheckpointsTrusted = false
		rep.UntrustedKey = ke
		return rep, ke
	}
	return rep, nil
}

func (rep *VerifyReport) fail(err error) (*VerifyReport, error) {
	var ve *VerifyError
	if errors.As(err, &ve) {
		rep.Problem = ve
	}
	return rep, err
}

// verifier carries the state of one Verify run.
type verifier struct {
	rep       *VerifyReport
	cks       []Checkpoint
	ck        int   // next checkpoint to match
	prev      *tip  // last record seen
	first     frame // oldest record
	firstSeg  string
	retention *retentionDetails // newest retention record
	retSeq    uint64
	curSeg    string // segment being read (the last one, at the end)
	rec       Record
}

// segment verifies one segment file.
func (v *verifier) segment(ctx context.Context, dir string, sf segFile, last bool) error {
	f, err := openFileData(dir, sf)
	if errors.Is(err, os.ErrNotExist) && !sf.compressed {
		f, err = openSegData(dir, sf.first) // compressed since the listing
	}
	var ve *VerifyError
	if errors.As(err, &ve) {
		return err
	}
	if err != nil {
		return fmt.Errorf("recorder: verify: %w", err)
	}
	defer f.Close()
	name := f.fileName()
	v.curSeg = name
	v.rep.Segments++
	size, err := f.dataSize()
	if err != nil {
		return fmt.Errorf("recorder: verify: %w", err)
	}
	stored, err := f.storedSize()
	if err != nil {
		return fmt.Errorf("recorder: verify: %w", err)
	}
	if f.compressed() {
		v.rep.CompressedSegments++
		v.rep.DiskBytes += stored
	}
	end := size
	if !last && !f.compressed() {
		// A crash between starting the next segment and cutting this one
		// leaves zeros after its records; the writer cuts them at start-up.
		if end, err = trimZeroTail(f, size); err != nil {
			return fmt.Errorf("recorder: verify: %w", err)
		}
	}
	next := func() uint64 {
		if v.prev != nil {
			return v.prev.seq + 1
		}
		return 1
	}
	lr := newSegReader(f, 0, end)
	var records, recEnd int64
	defer func() {
		v.rep.Bytes += recEnd
		if !f.compressed() {
			v.rep.DiskBytes += recEnd
		}
	}()
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, off, err := lr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errPartial) {
			if last {
				v.rep.TornTailBytes = int64(len(line))
				break
			}
			return &VerifyError{Segment: name, Seq: next(), Problem: ProblemTruncated,
				Detail: fmt.Sprintf("segment ends mid-record: %d bytes after the last whole record", len(line))}
		}
		if err != nil {
			return &VerifyError{Segment: name, Seq: next(), Problem: ProblemEdited, Detail: err.Error()}
		}
		fr, h, err := checkLine(name, line)
		if err != nil {
			return err
		}
		if err := checkLink(name, fr, v.prev, h.kind); err != nil {
			var ve *VerifyError
			if errors.As(err, &ve) && ve.Problem == ProblemDeleted && v.prev != nil {
				want := v.prev.seq + 1
				if seekSeq(f, off+int64(len(line))+1, end, want) {
					return &VerifyError{Segment: name, Seq: want, Problem: ProblemReordered,
						Detail: fmt.Sprintf("seq %d appears after seq %d", want, fr.seq)}
				}
			}
			return err
		}
		if off == 0 && fr.seq != sf.first {
			return &VerifyError{Segment: name, Seq: fr.seq, Problem: ProblemEdited,
				Detail: fmt.Sprintf("segment file is named for seq %d but starts with seq %d", sf.first, fr.seq)}
		}
		if err := decodeLine(line, &v.rec); err != nil {
			return &VerifyError{Segment: name, Seq: fr.seq, Problem: ProblemEdited, Detail: err.Error()}
		}
		if err := v.record(name, fr); err != nil {
			return err
		}
		records++
		recEnd = off + int64(len(line)) + 1
	}
	if !last && lr.zeroAt >= 0 && lr.zeroAt < end {
		return &VerifyError{Segment: name, Seq: next(), Problem: ProblemEdited,
			Detail: fmt.Sprintf("NUL bytes at offset %d, before the end of the segment's records", lr.zeroAt)}
	}
	if records == 0 {
		if !last {
			return &VerifyError{Segment: name, Seq: sf.first, Problem: ProblemTruncated, Detail: "segment is empty but is not the last one"}
		}
		if v.prev != nil && sf.first != v.prev.seq+1 {
			return &VerifyError{Segment: name, Seq: v.prev.seq + 1, Problem: ProblemDeleted,
				Detail: fmt.Sprintf("segment is named for seq %d but the log before it ends at seq %d", sf.first, v.prev.seq)}
		}
	}
	return nil
}

// record checks what one decoded record says beyond its bytes.
func (v *verifier) record(seg string, fr frame) error {
	if v.prev == nil {
		v.first, v.firstSeg = fr, seg
		v.rep.FirstSeq = fr.seq
		for v.ck < len(v.cks) && v.cks[v.ck].Seq < fr.seq {
			v.ck++
			v.rep.CheckpointsRemoved++
		}
	}
	switch v.rec.Kind {
	case KindRetention:
		var d retentionDetails
		if err := json.Unmarshal(v.rec.Details, &d); err != nil || d.NextSeq == 0 || len(d.NextPrevHash) != hashHexLen {
			return &VerifyError{Segment: seg, Seq: fr.seq, Problem: ProblemEdited, Detail: "retention record without a valid next_seq and next_prev_hash"}
		}
		v.retention, v.retSeq = &d, fr.seq
		v.rep.Retentions++
	case KindRecovery:
		v.rep.Recoveries++
	}
	if v.ck < len(v.cks) && v.cks[v.ck].Seq == fr.seq {
		c := v.cks[v.ck]
		if c.Hash != string(fr.hash[:]) {
			return &VerifyError{Segment: seg, Seq: fr.seq, Problem: ProblemEdited,
				Detail: fmt.Sprintf("the record does not match the checkpoint signed at %s: it or an earlier record was rewritten",
					c.Time.Format(time.RFC3339))}
		}
		v.ck++
		v.rep.Checkpoints++
	}
	v.prev = &tip{seq: fr.seq, hash: fr.hash}
	v.rep.Records++
	v.rep.LastSeq = fr.seq
	v.rep.LastHash = string(fr.hash[:])
	return nil
}

// finish checks the end against the checkpoints and the start against the
// retention records.
func (v *verifier) finish(opts VerifyOptions) error {
	if v.ck < len(v.cks) {
		c := v.cks[v.ck]
		var last uint64
		seg := checkpointsFile
		if v.prev != nil {
			last = v.prev.seq
		}
		if v.curSeg != "" {
			seg = v.curSeg
		}
		return &VerifyError{Segment: seg, Seq: last + 1, Problem: ProblemTruncated,
			Detail: fmt.Sprintf("the log ends at seq %d but the checkpoint signed at %s covers seq %d",
				last, c.Time.Format(time.RFC3339), c.Seq)}
	}
	if opts.RequireCheckpoint && len(v.cks) == 0 {
		return &VerifyError{Segment: checkpointsFile, Seq: v.rep.LastSeq, Problem: ProblemCheckpoint, Detail: "no checkpoint"}
	}
	if v.prev == nil {
		return nil
	}
	f := v.first
	switch {
	case f.prev == zeroHash && f.seq == 1:
		v.rep.ChainStart = "genesis"
	case f.prev == zeroHash:
		v.rep.ChainStart = "recovery" // checkLink allowed it only for a recovery record
	case v.retention == nil:
		return &VerifyError{Segment: v.firstSeg, Seq: f.seq - 1, Problem: ProblemDeleted,
			Detail: fmt.Sprintf("the log starts at seq %d, linked to an earlier record, and no retention record accounts for the records before it", f.seq)}
	case f.seq > v.retention.NextSeq:
		return &VerifyError{Segment: v.firstSeg, Seq: v.retention.NextSeq, Problem: ProblemDeleted,
			Detail: fmt.Sprintf("the log starts at seq %d but the retention record at seq %d kept seq %d on: seq %d to %d are missing",
				f.seq, v.retSeq, v.retention.NextSeq, v.retention.NextSeq, f.seq-1)}
	case f.seq == v.retention.NextSeq && string(f.prev[:]) != v.retention.NextPrevHash:
		return &VerifyError{Segment: v.firstSeg, Seq: f.seq, Problem: ProblemEdited,
			Detail: fmt.Sprintf("prev_hash differs from the one the retention record at seq %d names", v.retSeq)}
	default:
		v.rep.ChainStart = "retention"
	}
	return nil
}

// seekSeq reports whether a line with seq want appears in f between from and
// size (used to tell a reordered record from a deleted one).
func seekSeq(f io.ReaderAt, from, size int64, want uint64) bool {
	lr := newSegReader(f, from, size)
	for {
		line, _, err := lr.next()
		if err != nil {
			return false
		}
		if h, ok := parseHead(line); ok && h.seq == want {
			return true
		}
		if !bytes.HasPrefix(line, []byte(linePrefix)) {
			return false
		}
	}
}
