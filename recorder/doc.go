// Package recorder is the flight recorder: a durable, tamper-evident,
// bounded append-only log of everything a sidecar decided and did
// (PROTOCOL.md section 7), with per-trace queries and an offline verifier.
//
// # Layout
//
// A Log owns one directory (the sidecar passes <data-dir>/recorder):
//
//	seg-<first seq, 20 digits>.log  segments: one JSON record per line
//	seg-<first seq>.log.zst         a sealed segment compressed (seekable zstd)
//	seg-<first seq>.idx             index of a sealed segment (trace -> positions)
//	checkpoints.jsonl               signed checkpoints, one per line
//	LOCK                            flock held by the writing process
//	recovered-<time>/               logs set aside by Config.Recover
//
// # Records and the hash chain
//
// Every record carries seq, prev_hash and hash. hash is the lowercase hex
// SHA-256 of the record's canonical bytes: its line without the
// `,"hash":"…"` member and without the newline. The encoder writes exactly
// what encoding/json writes for Record with HTML escaping off, so a line can
// be checked by hand: cut `,"hash":"<64 hex>"` from the end, SHA-256 what is
// left (it ends in `}`), compare. prev_hash is the previous record's hash
// (64 zeros at the start of a chain), so the log is one chain across
// segments. Verify also checks that each line is canonical (decoding and
// re-encoding it gives the same bytes), so what a query shows is exactly
// what was hashed.
//
// # Durability
//
// The active segment is preallocated (Config.SegmentBytes, its tail zeros)
// and, on Linux, memory-mapped: Append encodes and hashes the record, and
// under one mutex numbers it, links it to the previous hash and copies it
// into the mapping. The page it lands in belongs to the kernel's page cache,
// so a crash of the process never loses a record Append returned — with no
// system call and no goroutine hand-off per record. Elsewhere each record is
// one pwrite(2). A group commit fsyncs from a background goroutine every
// SyncInterval (SyncBatch); SyncAlways fsyncs before Append returns, sharing
// the fsync among the appenders waiting. A failed write, memory fault or
// fsync breaks the log: every later Append fails (ErrBroken).
//
// Readers find the end of a segment's records at the first NUL byte where a
// line would start (no record holds a NUL: the encoder escapes control
// characters) or at the end of the file; a sealed segment is cut to its
// records, and so is the active one at Close.
//
// # Compression
//
// With Config.Compression (zstd, the default) maintenance rewrites each
// sealed, indexed segment as seg-<first seq>.log.zst: the zstd seekable
// format, independent frames of about 64 KiB of whole records and a seek
// table in a skippable frame, so that `zstd -d` restores the original
// file. Record offsets stay offsets in the uncompressed bytes; index files,
// Trace, Tail, Verify and retention work on either form.
//
// # Start-up
//
// Open checks the log (see Open). A torn last line — only possible at the
// end of the last segment, because a segment is fsynced before the next one
// starts — and any other bytes a crash left after the last whole record are
// cut away, logged with their size, and recorded as a recovery record. Anything else stops start-up with a *VerifyError naming segment
// and seq, unless Config.Recover is set.
//
// # Checkpoints
//
// With Config.CheckpointKey the log signs (Ed25519) a checkpoint of the last
// fsynced record every CheckpointEvery records or CheckpointInterval, and at
// Close. They live outside the segments, so cutting records off the end is
// detected as long as a later checkpoint survives.
//
// # What this protects against, and what not
//
// The chain alone detects any edit, deletion, insertion or reordering of
// records inside the log, deleted or renamed segments, and segments cut
// short — as long as the attacker does not rewrite everything after the
// change. SHA-256 needs no key: someone who can write the directory can
// rewrite a record and recompute every later hash. Signed checkpoints stop
// that up to the newest checkpoint (the rewritten record no longer matches
// it) and detect a cut tail. They do not help against someone who holds the
// checkpoint key (they can re-sign a rewritten log), who deletes or rolls
// back checkpoints.jsonl together with the tail (Verify then sees a shorter
// log with fewer checkpoints: use VerifyOptions.RequireCheckpoint, and ship
// Log.LastCheckpoint to another system to keep a copy out of reach), or who
// replaces the whole directory with a fresh chain (a recovery record or a
// new genesis is reported, not refused). Records written after the newest
// checkpoint can be cut or rewritten undetectably. Index files are a cache,
// not evidence: queries re-check every record they return against its hash,
// and Verify ignores them.
//
// # Bounds
//
// Segments rotate at SegmentBytes. Retention removes the oldest whole
// sealed segments past MaxAge or while the log exceeds MaxTotalBytes, first
// appending and fsyncing a retention record that names where the kept log
// starts, so Verify can tell retention from deletion. Memory: an append
// holds one record; the process keeps about 1 MiB of the active segment's
// mapping resident (pages behind the write position are unmapped at each
// group commit); the in-memory index covers only the active segment and is
// dropped when it is sealed, and each sealed segment keeps only its index
// fences in memory (8 bytes per 256 records: under 1 MB for the 10 GiB
// default), so memory is bounded by the retention limits, not by the
// records ever written.
//
// See docs/recorder.md for the measured numbers.
package recorder
