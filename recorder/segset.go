package recorder

import (
	"os"
	"sync"
	"sync/atomic"
)

// segment is one segment of an open log or reader.
type segment struct {
	name   string // plain file name, seg-<first seq>.log: the segment's identity
	first  uint64
	size   atomic.Int64 // bytes of whole records (uncompressed)
	stored atomic.Int64 // bytes on disk once sealed (compressed or not)
	last   tip          // last record; set by the writer, fixed once sealed

	// dataMu is held shared while reading data and exclusively to replace it
	// (by its compressed form), so the replaced file is closed at once and
	// its disk space freed.
	dataMu sync.RWMutex
	data   segData

	// Index state, guarded by the owner's index lock: exactly one of mem (the
	// active segment, or a sealed one until its index file is written) and
	// disk (+idxf) is set, or neither when the index must be rebuilt.
	mem  *memIndex
	disk *diskIndex
	idxf *os.File
	old  []*os.File // index handles replaced by a rebuild, closed at the end

	// Lifetime: queries hold references so files are closed only when the
	// segment has been retired (removed or the log closed) and released.
	refMu   sync.Mutex
	refs    int
	retired bool
}

// acquire takes a reference; false if the segment is already retired.
func (s *segment) acquire() bool {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if s.retired {
		return false
	}
	s.refs++
	return true
}

// release drops a reference, closing the files of a retired segment when it
// was the last.
func (s *segment) release() {
	s.refMu.Lock()
	s.refs--
	closeNow := s.retired && s.refs == 0
	s.refMu.Unlock()
	if closeNow {
		s.closeFiles()
	}
}

// retire marks the segment gone; its files close with the last reference.
func (s *segment) retire() {
	s.refMu.Lock()
	if s.retired {
		s.refMu.Unlock()
		return
	}
	s.retired = true
	closeNow := s.refs == 0
	s.refMu.Unlock()
	if closeNow {
		s.closeFiles()
	}
}

// read returns the segment's data, held until done is called.
func (s *segment) read() (data segData, done func()) {
	s.dataMu.RLock()
	return s.data, s.dataMu.RUnlock
}

// fileName is the name of the segment's file as it is now.
func (s *segment) fileName() string {
	d, done := s.read()
	defer done()
	if d == nil {
		return s.name
	}
	return d.fileName()
}

// replaceData swaps the segment's data for d and closes the old one once no
// reader holds it.
func (s *segment) replaceData(d segData) error {
	s.dataMu.Lock()
	old := s.data
	s.data = d
	s.dataMu.Unlock()
	if old == nil {
		return nil
	}
	return old.Close()
}

func (s *segment) closeFiles() {
	if s.data != nil {
		s.data.Close()
	}
	if s.idxf != nil {
		s.idxf.Close()
	}
	for _, f := range s.old {
		f.Close()
	}
}

// acquireAll takes references on a snapshot of segs; release them with
// releaseAll.
func acquireAll(segs []*segment) []*segment {
	out := make([]*segment, 0, len(segs))
	for _, s := range segs {
		if s.acquire() {
			out = append(out, s)
		}
	}
	return out
}

func releaseAll(segs []*segment) {
	for _, s := range segs {
		s.release()
	}
}
