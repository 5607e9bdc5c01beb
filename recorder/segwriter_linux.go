//go:build linux

package recorder

import (
	"errors"
	"os"
	"syscall"
)

// preallocate reserves the blocks of [0, size) so that writing them later
// cannot fail for lack of space (and a mapped page never faults for it),
// extending the file with zeros. File systems without fallocate get a sparse
// file instead.
func preallocate(f *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			info, serr := f.Stat()
			if serr != nil {
				return serr
			}
			if info.Size() >= size {
				return nil
			}
			return f.Truncate(size)
		default:
			return err
		}
	}
}

// mapShared maps [0, size) of f for reading and writing, shared with the
// page cache, advised random access: a page fault then brings in only the
// page faulted on, instead of reading megabytes around it.
func mapShared(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, syscall.EINVAL
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err == nil {
		_ = syscall.Madvise(mem, syscall.MADV_RANDOM)
	}
	return mem, err
}

func unmapShared(mem []byte) error { return syscall.Munmap(mem) }

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault pages in
// writable, as a write would, without writing them.
const madvPopulateWrite = 23

// populateWrite prefaults mem for writing; older kernels refuse the advice,
// and then appenders fault the pages in themselves.
func populateWrite(mem []byte) { _ = syscall.Madvise(mem, madvPopulateWrite) }

// dropPages unmaps mem's pages from this process. For a shared file mapping
// the pages, dirty or not, stay in the page cache: nothing written is lost.
func dropPages(mem []byte) { _ = syscall.Madvise(mem, syscall.MADV_DONTNEED) }

// fdatasync flushes f's data and the metadata needed to read it back.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
