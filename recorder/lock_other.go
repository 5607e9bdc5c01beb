//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package recorder

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/LOCK. This platform has no flock: nothing stops a second
// writer, so run one sidecar per data directory.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
}

// unlockDir closes the file opened by lockDir.
func unlockDir(f *os.File) error { return f.Close() }
