//go:build unix

package identity

import (
	"path/filepath"
	"syscall"
	"testing"
)

func TestHashTreeSpecialFile(t *testing.T) {
	dir := makeTree(t, baseTree())
	want := hashOf(t, dir, TreeHashOptions{})
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := HashTree(dir, TreeHashOptions{})
	if err == nil {
		t.Fatal("special file hashed")
	}
	if got := hashOf(t, dir, TreeHashOptions{Exclude: []string{"pipe"}}); got != want {
		t.Fatal("excluded special file changed the hash")
	}
}
