package recorder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sort"
)

// pos is where one record sits in its segment.
type pos struct {
	off uint32 // byte offset of the line
	n   uint32 // line length including the newline
}

// idxEntry is one index entry: a trace key and a record position.
type idxEntry struct {
	key uint64
	pos
}

// memIndex indexes the active segment: trace key -> positions, as a linked
// list per key over entries stored in fixed-size chunks (so growing never
// copies). It grows with the records of one segment and is dropped when the
// segment is sealed, so it is bounded by the segment size. Callers
// synchronise.
type memIndex struct {
	heads  map[uint64]int32 // key -> index of the newest entry
	chunks [][]memEntry
	n      int
}

type memEntry struct {
	idxEntry
	prev int32 // previous entry with the same key, -1 for none
}

const memChunk = 4096

func newMemIndex() *memIndex {
	return &memIndex{heads: make(map[uint64]int32)}
}

func (m *memIndex) at(i int32) *memEntry { return &m.chunks[i/memChunk][i%memChunk] }

// add appends an entry; entries must come in offset order.
func (m *memIndex) add(key uint64, p pos) {
	prev, ok := m.heads[key]
	if !ok {
		prev = -1
	}
	if m.n%memChunk == 0 {
		m.chunks = append(m.chunks, make([]memEntry, 0, memChunk))
	}
	c := &m.chunks[len(m.chunks)-1]
	*c = append(*c, memEntry{idxEntry: idxEntry{key: key, pos: p}, prev: prev})
	m.heads[key] = int32(m.n)
	m.n++
}

// lookup appends the positions of key in offset order.
func (m *memIndex) lookup(dst []pos, key uint64) []pos {
	i, ok := m.heads[key]
	if !ok {
		return dst
	}
	start := len(dst)
	for ; i >= 0; i = m.at(i).prev {
		dst = append(dst, m.at(i).pos)
	}
	slices.Reverse(dst[start:])
	return dst
}

// sorted returns the entries sorted by (key, offset), as the index file holds them.
func (m *memIndex) sorted() []idxEntry { return sortEntries(m.entries()) }

// entries copies the index's entries, in the order they were added.
func (m *memIndex) entries() []idxEntry {
	out := make([]idxEntry, 0, m.n)
	for _, c := range m.chunks {
		for i := range c {
			out = append(out, c[i].idxEntry)
		}
	}
	return out
}

// sortEntries sorts entries by key, then offset — the order index files
// hold. It needs no lock, so a segment's seal never holds up appenders.
func sortEntries(out []idxEntry) []idxEntry {
	slices.SortFunc(out, func(a, b idxEntry) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	return out
}

// The index file of a sealed segment (seg-N.idx):
//
//	header  64 bytes: magic "IATPIDX1", segment first seq, segment size,
//	        entry count, entries per block, block count, CRC-32C of the
//	        fence table, CRC-32C of the header's first 48 bytes
//	fences  block count × 8 bytes: the first key of each block
//	blocks  each: up to blockEntries × 16 bytes (key, offset, length), then
//	        the CRC-32C of those entry bytes
//
// All integers big-endian. Only header and fences are kept in memory (8
// bytes per 256 records); a lookup reads one block, about 4 KiB, per segment.
const (
	idxMagic      = "IATPIDX1"
	idxHeaderLen  = 64
	idxEntryLen   = 16
	blockEntries  = 256
	idxMaxEntries = 1 << 28 // a 1 GiB segment of 4-byte lines is far below
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// diskIndex is a loaded index file: its header and fence table.
type diskIndex struct {
	firstSeq uint64
	segBytes int64
	count    int
	fences   []uint64
}

// blockOff returns the file offset of block b and its entry count.
func (d *diskIndex) blockOff(b int) (int64, int) {
	n := blockEntries
	if rest := d.count - b*blockEntries; rest < n {
		n = rest
	}
	off := int64(idxHeaderLen) + int64(len(d.fences))*8 + int64(b)*(blockEntries*idxEntryLen+4)
	return off, n
}

// writeIndexFile writes entries (sorted by key, offset) as the index of a
// segment of segBytes bytes, to path via a temporary file, fsync and rename.
func writeIndexFile(path string, firstSeq uint64, segBytes int64, ents []idxEntry) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	w := bufio.NewWriterSize(f, 64<<10)
	nblocks := (len(ents) + blockEntries - 1) / blockEntries
	fences := make([]byte, nblocks*8)
	for b := 0; b < nblocks; b++ {
		binary.BigEndian.PutUint64(fences[b*8:], ents[b*blockEntries].key)
	}
	var hdr [idxHeaderLen]byte
	copy(hdr[:], idxMagic)
	binary.BigEndian.PutUint64(hdr[8:], firstSeq)
	binary.BigEndian.PutUint64(hdr[16:], uint64(segBytes))
	binary.BigEndian.PutUint64(hdr[24:], uint64(len(ents)))
	binary.BigEndian.PutUint32(hdr[32:], blockEntries)
	binary.BigEndian.PutUint32(hdr[36:], uint32(nblocks))
	binary.BigEndian.PutUint32(hdr[40:], crc32.Checksum(fences, castagnoli))
	binary.BigEndian.PutUint32(hdr[48:], crc32.Checksum(hdr[:48], castagnoli))
	w.Write(hdr[:])
	w.Write(fences)
	var block [blockEntries*idxEntryLen + 4]byte
	for b := 0; b < nblocks; b++ {
		part := ents[b*blockEntries : min(len(ents), (b+1)*blockEntries)]
		for i, e := range part {
			binary.BigEndian.PutUint64(block[i*idxEntryLen:], e.key)
			binary.BigEndian.PutUint32(block[i*idxEntryLen+8:], e.off)
			binary.BigEndian.PutUint32(block[i*idxEntryLen+12:], e.n)
		}
		n := len(part) * idxEntryLen
		binary.BigEndian.PutUint32(block[n:], crc32.Checksum(block[:n], castagnoli))
		w.Write(block[:n+4])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// errIndex says an index file is unusable; it is rebuilt from its segment.
var errIndex = errors.New("index file unusable")

// parseIndexHeader reads the header and fence table of an index file of
// size bytes from r, checking everything that can be checked without
// reading the blocks.
func parseIndexHeader(r io.ReaderAt, size int64) (*diskIndex, error) {
	var hdr [idxHeaderLen]byte
	if size < idxHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", errIndex, size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("%w: %w", errIndex, err)
	}
	if string(hdr[:8]) != idxMagic || binary.BigEndian.Uint32(hdr[48:]) != crc32.Checksum(hdr[:48], castagnoli) {
		return nil, fmt.Errorf("%w: bad header", errIndex)
	}
	d := &diskIndex{
		firstSeq: binary.BigEndian.Uint64(hdr[8:]),
		segBytes: int64(binary.BigEndian.Uint64(hdr[16:])),
	}
	count := binary.BigEndian.Uint64(hdr[24:])
	nblocks := uint64(binary.BigEndian.Uint32(hdr[36:]))
	if binary.BigEndian.Uint32(hdr[32:]) != blockEntries || count > idxMaxEntries ||
		nblocks != (count+blockEntries-1)/blockEntries || d.segBytes < 0 || d.segBytes > maxSegmentBytes+maxRecordBytesLimit {
		return nil, fmt.Errorf("%w: bad header values", errIndex)
	}
	d.count = int(count)
	want := int64(idxHeaderLen) + int64(nblocks)*8 + int64(count)*idxEntryLen + int64(nblocks)*4
	if want != size {
		return nil, fmt.Errorf("%w: size %d, header says %d", errIndex, size, want)
	}
	raw := make([]byte, nblocks*8)
	if _, err := r.ReadAt(raw, idxHeaderLen); err != nil {
		return nil, fmt.Errorf("%w: %w", errIndex, err)
	}
	if crc32.Checksum(raw, castagnoli) != binary.BigEndian.Uint32(hdr[40:]) {
		return nil, fmt.Errorf("%w: fence table checksum", errIndex)
	}
	d.fences = make([]uint64, nblocks)
	for i := range d.fences {
		d.fences[i] = binary.BigEndian.Uint64(raw[i*8:])
		if i > 0 && d.fences[i] < d.fences[i-1] {
			return nil, fmt.Errorf("%w: fences out of order", errIndex)
		}
	}
	return d, nil
}

// blockBuf holds one index block as read from disk.
type blockBuf [blockEntries*idxEntryLen + 4]byte

// lookup appends the positions of key, in offset order, reading the blocks
// that may hold it from r (the index file) into block. Positions past the
// segment size make the index unusable.
func (d *diskIndex) lookup(dst []pos, r io.ReaderAt, key uint64, block *blockBuf) ([]pos, error) {
	if len(d.fences) == 0 {
		return dst, nil
	}
	lo := sort.Search(len(d.fences), func(i int) bool { return d.fences[i] >= key })
	// Block lo-1 starts below key and may hold it; blocks from lo on hold it
	// only while they start with it.
	for b := max(lo-1, 0); b < len(d.fences) && (b < lo || d.fences[b] <= key); b++ {
		off, n := d.blockOff(b)
		buf := block[:n*idxEntryLen+4]
		if _, err := r.ReadAt(buf, off); err != nil {
			return dst, fmt.Errorf("%w: block %d: %w", errIndex, b, err)
		}
		if crc32.Checksum(buf[:n*idxEntryLen], castagnoli) != binary.BigEndian.Uint32(buf[n*idxEntryLen:]) {
			return dst, fmt.Errorf("%w: block %d checksum", errIndex, b)
		}
		for i := 0; i < n; i++ {
			e := buf[i*idxEntryLen:]
			k := binary.BigEndian.Uint64(e)
			if k != key {
				continue
			}
			p := pos{off: binary.BigEndian.Uint32(e[8:]), n: binary.BigEndian.Uint32(e[12:])}
			if int64(p.off)+int64(p.n) > d.segBytes || p.n == 0 {
				return dst, fmt.Errorf("%w: block %d: entry outside the segment", errIndex, b)
			}
			dst = append(dst, p)
		}
	}
	return dst, nil
}
