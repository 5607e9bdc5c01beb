package recorder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// indexFixture builds entries where some keys repeat across block
// boundaries, and the positions each key should map to.
func indexFixture() ([]idxEntry, map[uint64][]pos) {
	m := newMemIndex()
	want := map[uint64][]pos{}
	off := uint32(0)
	for i := 0; i < 3000; i++ {
		key := uint64(i%700) * 0x9E3779B97F4A7C15 // spread keys
		if i%3 == 0 {
			key = 42 // one key with ~1000 entries spans four blocks
		}
		p := pos{off: off, n: 100}
		off += 100
		m.add(key, p)
		want[key] = append(want[key], p)
	}
	return m.sorted(), want
}

func TestIndexFileRoundTrip(t *testing.T) {
	ents, want := indexFixture()
	path := filepath.Join(t.TempDir(), "seg.idx")
	if err := writeIndexFile(path, 5, 300000, ents); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	d, err := parseIndexHeader(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	if d.firstSeq != 5 || d.segBytes != 300000 || d.count != 3000 || len(d.fences) != 12 {
		t.Fatalf("header = %+v", d)
	}
	for key, ps := range want {
		got, err := d.lookup(nil, f, key, new(blockBuf))
		if err != nil {
			t.Fatalf("lookup %d: %v", key, err)
		}
		if !slices.Equal(got, ps) {
			t.Fatalf("lookup %d = %d positions, want %d", key, len(got), len(ps))
		}
	}
	for _, key := range []uint64{1, 43, 1<<64 - 1} {
		if got, err := d.lookup(nil, f, key, new(blockBuf)); err != nil || len(got) != 0 {
			t.Fatalf("lookup of absent key %d = %v, %v", key, got, err)
		}
	}
	m := newMemIndex()
	for _, e := range ents {
		m.add(e.key, e.pos)
	}
	if got := m.lookup(nil, 42); len(got) != len(want[42]) {
		t.Fatalf("memIndex lookup = %d positions, want %d", len(got), len(want[42]))
	}
}

func TestIndexFileCorruption(t *testing.T) {
	ents, _ := indexFixture()
	path := filepath.Join(t.TempDir(), "seg.idx")
	if err := writeIndexFile(path, 5, 300000, ents); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fencesEnd := idxHeaderLen + 12*8
	tests := []struct {
		name       string
		mod        func([]byte) []byte
		segBytes   int64 // segment size to check positions against; 0 = as written
		headerFail bool
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, 0, true},
		{"header value", func(b []byte) []byte { b[20] ^= 1; return b }, 0, true},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, 0, true},
		{"extended", func(b []byte) []byte { return append(b, 0) }, 0, true},
		{"fence table", func(b []byte) []byte { b[idxHeaderLen+3] ^= 1; return b }, 0, true},
		{"block entry", func(b []byte) []byte { b[fencesEnd+5] ^= 1; return b }, 0, false},
		{"block checksum", func(b []byte) []byte { b[fencesEnd+blockEntries*idxEntryLen+1] ^= 1; return b }, 0, false},
		{"too short", func(b []byte) []byte { return b[:10] }, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.mod(bytes.Clone(good))
			r := bytes.NewReader(data)
			d, err := parseIndexHeader(r, int64(len(data)))
			if tt.headerFail {
				if !errors.Is(err, errIndex) {
					t.Fatalf("parseIndexHeader error = %v, want errIndex", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseIndexHeader: %v", err)
			}
			// Every key in the damaged first block must fail, not mislead.
			_, err = d.lookup(nil, r, ents[0].key, new(blockBuf))
			if !errors.Is(err, errIndex) {
				t.Fatalf("lookup error = %v, want errIndex", err)
			}
		})
	}
	t.Run("entry past the segment", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "small.idx")
		if err := writeIndexFile(p, 1, 50, []idxEntry{{key: 9, pos: pos{off: 40, n: 20}}}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		r := bytes.NewReader(data)
		d, err := parseIndexHeader(r, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.lookup(nil, r, 9, new(blockBuf)); !errors.Is(err, errIndex) {
			t.Fatalf("lookup error = %v, want errIndex", err)
		}
	})
}

// FuzzIndexFile feeds arbitrary bytes to the index reader: index files are
// on disk and may be damaged; they must never crash a query.
func FuzzIndexFile(f *testing.F) {
	ents, _ := indexFixture()
	path := filepath.Join(f.TempDir(), "seg.idx")
	if err := writeIndexFile(path, 5, 300000, ents[:300]); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good, uint64(42))
	f.Add(good[:idxHeaderLen], uint64(0))
	f.Add([]byte("IATPIDX1"), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, key uint64) {
		r := bytes.NewReader(data)
		d, err := parseIndexHeader(r, int64(len(data)))
		if err != nil {
			return
		}
		ps, err := d.lookup(nil, r, key, new(blockBuf))
		if err != nil {
			return
		}
		for _, p := range ps {
			if int64(p.off)+int64(p.n) > d.segBytes || p.n == 0 {
				t.Fatalf("lookup returned a position outside the segment: %+v", p)
			}
		}
	})
}
