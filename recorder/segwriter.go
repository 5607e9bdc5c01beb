package recorder

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
)

// segWriter is the writable end of the active segment: a file preallocated
// to cap bytes, whose tail past the records is zeros, written at increasing
// offsets by the appender holding Log.mu.
//
// On Linux the file is memory-mapped (MAP_SHARED) and a record is copied
// into the mapping: the page belongs to the kernel's page cache the moment
// it is written, so it survives a crash of the process exactly as a
// write(2) would, without a system call. Elsewhere, or when mapping fails,
// each record is one pwrite(2).
type segWriter struct {
	f    *os.File
	name string // segment file name, for messages

	// mem and cap change only under both Log.mu and mu: write reads them
	// under the first, advise under the second.
	mu  sync.Mutex
	cap int64  // preallocated size of the file
	mem []byte // the shared mapping of [0, cap); nil: pwrite

	// Page-table upkeep of the mapping, done by the group commit under
	// Log.syncMu (see dropBehind).
	populated int64 // [0, populated) was prefaulted for writing
	dropped   int64 // [0, dropped) was unmapped from this process
}

// usePwrite forces the pwrite path (tests compare and exercise both).
var usePwrite = false

// openSegWriter opens the segment file at path for writing at size bytes
// (its records so far), preallocating it to cap bytes (at least size) and
// mapping it. create makes a new file, failing if one exists.
func openSegWriter(path, name string, size, capacity int64, create bool) (*segWriter, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	capacity = max(capacity, size)
	if err := preallocate(f, capacity); err != nil {
		f.Close()
		return nil, fmt.Errorf("preallocate %s to %d bytes: %w", name, capacity, err)
	}
	w := &segWriter{f: f, name: name, cap: capacity, populated: size}
	if !usePwrite {
		// A failed mapping is not fatal: pwrite writes the same bytes.
		if mem, err := mapShared(f, capacity); err == nil {
			w.mem = mem
		}
	}
	return w, nil
}

// write copies line (a whole record, ending in a newline) to offset off. The
// newline is stored last, so that a reader of the page cache never sees a
// line end before the bytes of the line (on any CPU whose stores become
// visible in order; readers also treat a line holding a NUL byte as a write
// in progress). A fault while writing the mapping (the file was truncated
// behind the log's back, or the disk is full under a sparse file) is
// returned as an error instead of crashing the process.
func (w *segWriter) write(off int64, line []byte) (err error) {
	n := int64(len(line))
	if off < 0 || off+n > w.cap || n == 0 {
		return fmt.Errorf("write %s: %d bytes at offset %d past its preallocated %d", w.name, n, off, w.cap)
	}
	if w.mem == nil {
		if _, err := w.f.WriteAt(line, off); err != nil {
			return fmt.Errorf("write %s: %w", w.name, err)
		}
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("write %s: memory fault writing the mapped segment at offset %d (truncated by someone else, or the disk is full): %v", w.name, off, r)
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	copy(w.mem[off:off+n-1], line[:n-1])
	w.mem[off+n-1] = line[n-1]
	return nil
}

// grow makes room for a record of n bytes at the start of an empty segment
// whose preallocation is smaller (a segment reopened with a small size).
func (w *segWriter) grow(n int64) error {
	if n <= w.cap {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.unmapLocked(); err != nil {
		return err
	}
	if err := preallocate(w.f, n); err != nil {
		return fmt.Errorf("preallocate %s to %d bytes: %w", w.name, n, err)
	}
	w.cap = n
	if !usePwrite {
		if mem, err := mapShared(w.f, n); err == nil {
			w.mem = mem
		}
	}
	return nil
}

// sync makes every record written so far durable (fdatasync; for a shared
// mapping on Linux that covers the pages written through it).
func (w *segWriter) sync() error {
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("fsync %s: %w", w.name, err)
	}
	return nil
}

// seal fsyncs the segment and cuts its preallocated tail, leaving exactly
// size bytes of records. The mapping stays until close.
func (w *segWriter) seal(size int64) error {
	if err := w.sync(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("cut the preallocated tail of %s: %w", w.name, err)
	}
	w.cap = size
	return nil
}

// close unmaps and closes the file.
func (w *segWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.unmapLocked(), w.f.Close())
}

func (w *segWriter) unmapLocked() error {
	if w.mem == nil {
		return nil
	}
	mem := w.mem
	w.mem = nil
	return unmapShared(mem)
}

// Page-table upkeep of the mapping, done by the group commit. Appenders
// fault pages in as they first write them (a few microseconds each: the
// kernel allocates and zeroes a page-cache page; the mapping is advised
// random access so that a fault never reads around it, which with the
// usual multi-megabyte readahead costs milliseconds), so the group commit
// prefaults the next populateAhead bytes for writing (without changing
// them) after each fsync.
// Before each fsync it unmaps the pages already filled: writing back a
// mapped page write-protects it again, one TLB shootdown per page that
// interrupts the appenders' CPU, while unmapping a range costs one. The
// pages stay in the page cache (dirty ones are still written back), and the
// process's resident memory stays at about populateAhead however large the
// segment grows.
const (
	populateAhead = 1 << 20
	pageMask      = 4<<10 - 1
)

// dropBehind unmaps the whole pages below the write position at. Callers
// hold Log.syncMu; appenders write at or after at meanwhile.
func (w *segWriter) dropBehind(at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mem == nil {
		return
	}
	if drop := min(at&^pageMask, w.cap); drop > w.dropped {
		dropPages(w.mem[w.dropped:drop])
		w.dropped = drop
	}
}

// populateAhead prefaults the populateAhead bytes after the write position
// at, when less than half of them are left. Callers hold Log.syncMu.
func (w *segWriter) populateAhead(at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mem != nil && w.populated-at < populateAhead/2 {
		w.populate(at, populateAhead)
	}
}

// populateChunk is how much one prefault call covers: the kernel holds the
// process's memory-map lock for the call, and an appender whose page fault
// needs that lock (or a heap growth wanting it for writing) waits for it.
const populateChunk = 64 << 10

// populate prefaults [from, from+n) for writing, clipped to the mapping.
func (w *segWriter) populate(from, n int64) {
	from = max(from&^pageMask, w.populated)
	to := min(from+n, w.cap)
	for at := from; at < to; at += populateChunk {
		populateWrite(w.mem[at:min(at+populateChunk, to)])
	}
	w.populated = max(w.populated, to)
}
