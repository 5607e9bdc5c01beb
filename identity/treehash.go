package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// HashPrefix starts every hash this package writes: "sha256:<64 hex>".
const HashPrefix = "sha256:"

// treeHashHeader versions the tree hash stream; a change of the rules
// below changes it.
const treeHashHeader = "iatp-tree-v1\n"

// TreeHashOptions tunes HashTree. The zero value hashes everything.
type TreeHashOptions struct {
	// Exclude lists base names of files or directories to leave out
	// wherever they appear, for example ".git". If nil, nothing is left out.
	Exclude []string
}

// HashTree returns a deterministic hash ("sha256:<hex>") of the directory
// tree at root, the same whatever the order of entries on disk, the mtimes,
// the owner or the umask:
//
//   - entries are sorted by their slash-separated path relative to root,
//     compared byte by byte;
//   - a regular file contributes its path, its content and one bit: whether
//     any execute bit is set;
//   - a symbolic link contributes its path and its target text; it is never
//     followed (a link to a directory is not descended into);
//   - directories contribute only through the paths of what they hold, so
//     empty directories do not change the hash (as in git);
//   - any other kind of file (device, socket, named pipe) is an error: the
//     hash must describe everything in the tree.
//
// The hash is SHA-256 over "iatp-tree-v1\n" followed by one line per entry:
// kind ('f' file, 'x' executable file, 'l' symlink), a space, the path as
// "<byte length>:<path>", a space and the hex SHA-256 of the content (or
// of the link target), then "\n".
func HashTree(root string, opts TreeHashOptions) (string, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return "", fmt.Errorf("hash tree: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("hash tree: %s is not a directory", root)
	}
	type entry struct {
		path   string
		kind   byte
		digest [sha256.Size]byte
	}
	var entries []entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if slices.Contains(opts.Exclude, d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entries = append(entries, entry{path: rel, kind: 'l', digest: sha256.Sum256([]byte(filepath.ToSlash(target)))})
		case t.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			digest, err := hashFileContent(p)
			if err != nil {
				return err
			}
			kind := byte('f')
			if info.Mode().Perm()&0o111 != 0 {
				kind = 'x'
			}
			entries = append(entries, entry{path: rel, kind: kind, digest: digest})
		default:
			return fmt.Errorf("%s is a special file (%s): remove it or exclude it", rel, t.Type())
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash tree: %w", err)
	}
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.path < b.path:
			return -1
		case a.path > b.path:
			return 1
		}
		return 0
	})
	h := sha256.New()
	io.WriteString(h, treeHashHeader)
	line := make([]byte, 0, 256)
	for _, e := range entries {
		line = append(line[:0], e.kind, ' ')
		line = strconv.AppendInt(line, int64(len(e.path)), 10)
		line = append(line, ':')
		line = append(line, e.path...)
		line = append(line, ' ')
		line = hex.AppendEncode(line, e.digest[:])
		line = append(line, '\n')
		h.Write(line)
	}
	return HashPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFileContent(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// HashFile returns "sha256:<hex>" of the bytes of the file at path, the
// config hash of an attestation.
func HashFile(path string) (string, error) {
	sum, err := hashFileContent(path)
	if err != nil {
		return "", fmt.Errorf("hash file: %w", err)
	}
	return HashPrefix + hex.EncodeToString(sum[:]), nil
}

// HashBytes returns "sha256:<hex>" of b.
func HashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return HashPrefix + hex.EncodeToString(sum[:])
}

// validHash reports whether s is "sha256:<64 hex>" or bare 64 hex digits
// (what the widely installed package's hexdigest gives). The strict form
// also keeps the colon-joined v1 signing message unambiguous.
func validHash(s string) bool {
	s = strings.TrimPrefix(s, HashPrefix)
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
