package recorder

import (
	"os"
	"sync"
	"sync/atomic"
)

// segment is one segment file of an open log or reader.
type segment struct {
	name  string
	first uint64
	rf    *os.File     // read handle (ReadAt is safe for concurrent use)
	size  atomic.Int64 // bytes of whole records
	last  tip          // last record; set by the writer, fixed once sealed

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

func (s *segment) closeFiles() {
	if s.rf != nil {
		s.rf.Close()
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
