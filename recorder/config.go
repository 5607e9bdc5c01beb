package recorder

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SyncMode says when appended records are fsynced.
type SyncMode string

// The sync modes.
const (
	// SyncBatch (the default): Append returns once the record is in the
	// kernel's page cache (copied into the memory-mapped segment, or handed
	// to pwrite(2)), so a crash of the process cannot lose it; a background
	// group commit fsyncs every Config.SyncInterval, bounding what a crash
	// of the machine can lose to that interval.
	SyncBatch SyncMode = "batch"
	// SyncAlways: Append returns once the record is fsynced. Concurrent
	// appenders share each fsync (group commit).
	SyncAlways SyncMode = "always"
)

// Compression says how sealed segments are stored.
type Compression string

// The compression modes.
const (
	// CompressionZstd (the default): once a segment is sealed and indexed,
	// the maintenance goroutine rewrites it as seg-<first seq>.log.zst in the
	// zstd seekable format — independent frames of about 64 KiB of whole
	// records and a table of them — checks it, and removes the original.
	// Record offsets keep meaning offsets in the uncompressed bytes, so
	// index files, Trace, Verify and the audit commands read compressed and
	// plain segments alike, and `zstd -d` gives back the original file. The
	// active segment is never compressed.
	CompressionZstd Compression = "zstd"
	// CompressionNone keeps sealed segments as they were written. Segments
	// compressed earlier stay compressed and readable.
	CompressionNone Compression = "none"
)

// Defaults and limits of Config.
const (
	DefaultSyncInterval       = 10 * time.Millisecond
	DefaultSegmentBytes       = 64 << 20
	DefaultMaxAge             = 30 * 24 * time.Hour
	DefaultMaxTotalBytes      = 10 << 30
	DefaultMaxRecordBytes     = 1 << 20
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = time.Minute

	minSegmentBytes     = 4 << 10
	maxSegmentBytes     = 1 << 30
	minRecordBytes      = 1 << 10
	maxRecordBytesLimit = 64 << 20
)

// Config configures a Log. The zero value of each optional field selects the
// default named beside it.
type Config struct {
	// Dir is the recorder directory (the sidecar passes <data-dir>/recorder).
	// Required; created with mode 0700 if missing.
	Dir string
	// Sync is the sync mode; "" means SyncBatch.
	Sync SyncMode
	// SyncInterval is the group-commit interval of SyncBatch; 0 means 10ms.
	SyncInterval time.Duration
	// SegmentBytes is the size at which the active segment is sealed and a
	// new one started; 0 means 64 MiB. Between 4 KiB and 1 GiB.
	SegmentBytes int64
	// MaxAge: sealed segments whose newest record is older are removed; 0
	// means 30 days.
	MaxAge time.Duration
	// MaxTotalBytes: the oldest sealed segments are removed while the log
	// (segments and their indexes) is larger; 0 means 10 GiB. The active
	// segment is never removed.
	MaxTotalBytes int64
	// Compression says how sealed segments are stored; "" means
	// CompressionZstd.
	Compression Compression
	// MaxRecordBytes bounds one encoded record; a larger one is refused with
	// ErrRecordTooLarge. 0 means 1 MiB; at most 64 MiB.
	MaxRecordBytes int
	// CheckpointKey signs checkpoints: an Ed25519 key (an
	// ed25519.PrivateKey, or an identity.PrivateKey). Nil means no checkpoints.
	CheckpointKey crypto.Signer
	// CheckpointKeyID names the key in checkpoints; "" means the first 16 hex
	// digits of the SHA-256 of the public key.
	CheckpointKeyID string
	// CheckpointEvery: a checkpoint is written once this many records were
	// fsynced since the last one; 0 means 10000.
	CheckpointEvery int
	// CheckpointInterval: a checkpoint is written at least this often while
	// records arrive; 0 means 1 minute.
	CheckpointInterval time.Duration
	// Recover starts a new chain, moving the old files to a recovered-*
	// subdirectory, instead of refusing a log that fails verification at
	// start-up. The new chain's first record says what happened.
	Recover bool
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
	// Clock gives record and checkpoint times and the retention age; nil
	// means time.Now.
	Clock func() time.Time
}

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Dir == "" {
		return cfg, errors.New("recorder: config: Dir is required")
	}
	switch cfg.Sync {
	case "":
		cfg.Sync = SyncBatch
	case SyncBatch, SyncAlways:
	default:
		return cfg, fmt.Errorf("recorder: config: sync %q is not batch or always", cfg.Sync)
	}
	switch cfg.Compression {
	case "":
		cfg.Compression = CompressionZstd
	case CompressionZstd, CompressionNone:
	default:
		return cfg, fmt.Errorf("recorder: config: compression %q is not zstd or none", cfg.Compression)
	}
	if err := defaultDuration(&cfg.SyncInterval, DefaultSyncInterval, "SyncInterval"); err != nil {
		return cfg, err
	}
	if err := defaultDuration(&cfg.MaxAge, DefaultMaxAge, "MaxAge"); err != nil {
		return cfg, err
	}
	if err := defaultDuration(&cfg.CheckpointInterval, DefaultCheckpointInterval, "CheckpointInterval"); err != nil {
		return cfg, err
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = DefaultSegmentBytes
	}
	if cfg.SegmentBytes < minSegmentBytes || cfg.SegmentBytes > maxSegmentBytes {
		return cfg, fmt.Errorf("recorder: config: SegmentBytes %d is outside [%d, %d]", cfg.SegmentBytes, minSegmentBytes, maxSegmentBytes)
	}
	if cfg.MaxTotalBytes == 0 {
		cfg.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if cfg.MaxTotalBytes < 0 {
		return cfg, fmt.Errorf("recorder: config: MaxTotalBytes %d is negative", cfg.MaxTotalBytes)
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if cfg.MaxRecordBytes < minRecordBytes || cfg.MaxRecordBytes > maxRecordBytesLimit {
		return cfg, fmt.Errorf("recorder: config: MaxRecordBytes %d is outside [%d, %d]", cfg.MaxRecordBytes, minRecordBytes, maxRecordBytesLimit)
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.CheckpointEvery < 0 {
		return cfg, fmt.Errorf("recorder: config: CheckpointEvery %d is negative", cfg.CheckpointEvery)
	}
	if cfg.CheckpointKey != nil {
		pub, ok := cfg.CheckpointKey.Public().(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return cfg, fmt.Errorf("recorder: config: CheckpointKey must be an Ed25519 key, its public key is %T", cfg.CheckpointKey.Public())
		}
		if cfg.CheckpointKeyID == "" {
			sum := sha256.Sum256(pub)
			cfg.CheckpointKeyID = hex.EncodeToString(sum[:8])
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

func defaultDuration(d *time.Duration, def time.Duration, name string) error {
	if *d == 0 {
		*d = def
	}
	if *d < 0 {
		return fmt.Errorf("recorder: config: %s %v is negative", name, *d)
	}
	return nil
}
