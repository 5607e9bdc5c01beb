package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A compressed segment (seg-<first seq>.log.zst) holds exactly the bytes of
// the sealed segment it replaces, in the zstd seekable format
// (github.com/facebook/zstd, contrib/seekable_format), so that `zstd -d`
// restores the original file and a reader can decompress one part of it:
//
//	frames      independent zstd frames, each holding whole lines (about
//	            zframeTarget bytes of records; a longer line gets a frame of
//	            its own), each with its content checksum
//	seek table  a skippable frame: magic 0x184D2A5E, its size (4 bytes),
//	            then per frame its compressed and decompressed size (4 bytes
//	            each), then the footer: the number of frames (4 bytes), a
//	            descriptor byte (0: no per-frame checksums in the table, the
//	            frames carry their own) and the magic 0x8F92EAB1
//
// All integers little-endian, as zstd has them. Record offsets (in index
// files, in Trace) stay offsets in the uncompressed bytes: a read finds the
// frame holding the offset in the seek table and decompresses that frame.
const (
	zsegSuffix        = ".log.zst"
	zframeTarget      = 64 << 10
	zskippableMagic   = 0x184D2A5E
	zseekableMagic    = 0x8F92EAB1
	zfooterLen        = 9
	zentryLen         = 8
	zseekHeaderLen    = 8
	zstdFrameMagic    = 0xFD2FB528
	zminFrameBytes    = 9 // the smallest zstd frame: magic, header, one empty block
	zmaxTotalBytes    = maxSegmentBytes + maxRecordBytesLimit
	zmaxFrameDecoded  = zframeTarget + maxLineLimit
	zseekDescriptorOK = 0
)

// errZseg says a compressed segment is damaged: its seek table does not
// parse, or a frame does not decode to what the table says.
var errZseg = errors.New("compressed segment damaged")

// zframe is one frame of a compressed segment.
type zframe struct {
	coff, clen int64 // position and length of the frame in the file
	uoff, ulen int64 // position and length of its bytes in the segment
}

// parseSeekTable reads the seek table at the end of a compressed segment of
// fileSize bytes and returns its frames, checking that they tile the file
// before the table exactly and stay within the bounds of a segment.
func parseSeekTable(r io.ReaderAt, fileSize int64) ([]zframe, error) {
	if fileSize < zseekHeaderLen+zfooterLen {
		return nil, fmt.Errorf("%w: %d bytes is too short for a seek table", errZseg, fileSize)
	}
	var foot [zfooterLen]byte
	if _, err := r.ReadAt(foot[:], fileSize-zfooterLen); err != nil {
		return nil, fmt.Errorf("%w: reading the seek table footer: %w", errZseg, err)
	}
	if binary.LittleEndian.Uint32(foot[5:]) != zseekableMagic {
		return nil, fmt.Errorf("%w: no seek table at the end (the file was cut or is not a compressed segment)", errZseg)
	}
	if foot[4] != zseekDescriptorOK {
		return nil, fmt.Errorf("%w: seek table descriptor %#x is not supported", errZseg, foot[4])
	}
	n := int64(binary.LittleEndian.Uint32(foot[:4]))
	tableLen := zseekHeaderLen + n*zentryLen + zfooterLen
	if n == 0 || tableLen > fileSize || n > (fileSize-tableLen)/zminFrameBytes {
		return nil, fmt.Errorf("%w: seek table claims %d frames in %d bytes", errZseg, n, fileSize)
	}
	table := make([]byte, tableLen-zfooterLen)
	if _, err := r.ReadAt(table, fileSize-tableLen); err != nil {
		return nil, fmt.Errorf("%w: reading the seek table: %w", errZseg, err)
	}
	if binary.LittleEndian.Uint32(table) != zskippableMagic ||
		int64(binary.LittleEndian.Uint32(table[4:])) != tableLen-zseekHeaderLen {
		return nil, fmt.Errorf("%w: seek table frame header is wrong", errZseg)
	}
	frames := make([]zframe, n)
	var coff, uoff int64
	for i := range frames {
		e := table[zseekHeaderLen+int64(i)*zentryLen:]
		clen := int64(binary.LittleEndian.Uint32(e))
		ulen := int64(binary.LittleEndian.Uint32(e[4:]))
		if clen < zminFrameBytes || ulen == 0 || ulen > zmaxFrameDecoded {
			return nil, fmt.Errorf("%w: seek table entry %d: %d bytes compressed, %d decompressed", errZseg, i, clen, ulen)
		}
		frames[i] = zframe{coff: coff, clen: clen, uoff: uoff, ulen: ulen}
		coff += clen
		uoff += ulen
		if uoff > zmaxTotalBytes || coff > fileSize-tableLen {
			return nil, fmt.Errorf("%w: seek table entries run past the file or a segment's size", errZseg)
		}
	}
	if coff != fileSize-tableLen {
		return nil, fmt.Errorf("%w: frames take %d bytes but the file has %d before its seek table", errZseg, coff, fileSize-tableLen)
	}
	return frames, nil
}

// zdecoder is shared by all compressed segments: DecodeAll is safe for
// concurrent use. Its limits bound what a damaged frame can make it allocate.
var zdecoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(zmaxFrameDecoded), zstd.WithDecoderMaxWindow(zmaxFrameDecoded))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
})

// zframePool recycles decompressed frames.
var zframePool = sync.Pool{New: func() any { b := make([]byte, 0, zframeTarget+4<<10); return &b }}

// zsegReader reads a compressed segment by offsets in its uncompressed
// bytes. It keeps the last frame it decompressed, so that reading a segment
// in order decompresses each frame once. Safe for concurrent use.
type zsegReader struct {
	f      io.ReaderAt
	closer io.Closer
	name   string
	frames []zframe
	size   int64 // uncompressed bytes
	stored int64 // bytes of the file

	mu     sync.Mutex
	cached int     // index of the frame in buf, -1 for none
	buf    *[]byte // its bytes
}

// openZseg opens the compressed segment at path.
func openZseg(path, name string) (*zsegReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	z, err := newZsegReader(f, info.Size(), name)
	if err != nil {
		f.Close()
		return nil, err
	}
	z.closer = f
	return z, nil
}

// newZsegReader reads the compressed segment of fileSize bytes in r.
func newZsegReader(r io.ReaderAt, fileSize int64, name string) (*zsegReader, error) {
	frames, err := parseSeekTable(r, fileSize)
	if err != nil {
		return nil, err
	}
	last := frames[len(frames)-1]
	return &zsegReader{f: r, name: name, frames: frames, size: last.uoff + last.ulen, stored: fileSize, cached: -1}, nil
}

// ReadAt implements io.ReaderAt over the uncompressed bytes.
func (z *zsegReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", z.name)
	}
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= z.size {
			return n, io.EOF
		}
		i := sort.Search(len(z.frames), func(i int) bool { return z.frames[i].uoff+z.frames[i].ulen > at })
		m, err := z.copyFrame(i, p[n:], at-z.frames[i].uoff)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyFrame copies frame i's bytes from offset within to p.
func (z *zsegReader) copyFrame(i int, p []byte, within int64) (int, error) {
	z.mu.Lock()
	if z.cached == i {
		n := copy(p, (*z.buf)[within:])
		z.mu.Unlock()
		return n, nil
	}
	z.mu.Unlock()
	buf := zframePool.Get().(*[]byte)
	data, err := z.decode(i, (*buf)[:0])
	if err != nil {
		zframePool.Put(buf)
		return 0, err
	}
	*buf = data
	z.mu.Lock()
	n := copy(p, data[within:])
	old := z.buf
	z.cached, z.buf = i, buf
	z.mu.Unlock()
	if old != nil && cap(*old) <= 1<<20 {
		zframePool.Put(old)
	}
	return n, nil
}

// decode decompresses frame i into dst, checking it holds exactly one zstd
// frame of the size the seek table gives.
func (z *zsegReader) decode(i int, dst []byte) ([]byte, error) {
	fr := z.frames[i]
	comp := make([]byte, fr.clen)
	if _, err := z.f.ReadAt(comp, fr.coff); err != nil {
		return dst, fmt.Errorf("%w: reading frame %d: %w", errZseg, i, err)
	}
	if binary.LittleEndian.Uint32(comp) != zstdFrameMagic {
		return dst, fmt.Errorf("%w: frame %d (records from byte %d) does not start with the zstd magic", errZseg, i, fr.uoff)
	}
	if int64(cap(dst)) < fr.ulen {
		dst = make([]byte, 0, fr.ulen)
	}
	out, err := zdecoder().DecodeAll(comp, dst[:0:fr.ulen])
	if err != nil {
		return dst, fmt.Errorf("%w: frame %d (records from byte %d) does not decode: %v", errZseg, i, fr.uoff, err)
	}
	if int64(len(out)) != fr.ulen {
		return dst, fmt.Errorf("%w: frame %d (records from byte %d) holds %d bytes, the seek table says %d", errZseg, i, fr.uoff, len(out), fr.ulen)
	}
	return out, nil
}

// Close closes the file.
func (z *zsegReader) Close() error {
	if z.closer == nil {
		return nil
	}
	return z.closer.Close()
}
