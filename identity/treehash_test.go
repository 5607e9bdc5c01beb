package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type treeFile struct {
	path, content string
	mode          os.FileMode
	link          string // when set, a symlink to link
}

func makeTree(t *testing.T, files []treeFile) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if f.link != "" {
			if err := os.Symlink(f.link, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func hashOf(t *testing.T, dir string, opts TreeHashOptions) string {
	t.Helper()
	h, err := HashTree(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func baseTree() []treeFile {
	return []treeFile{
		{path: "main.py", content: "print('hi')\n", mode: 0o644},
		{path: "run.sh", content: "#!/bin/sh\n", mode: 0o755},
		{path: "lib/a.py", content: "a = 1\n", mode: 0o644},
		{path: "lib/b.py", content: "b = 2\n", mode: 0o644},
		{path: "lib.txt", content: "sorts before lib/ byte-wise\n", mode: 0o644},
		{path: "current", link: "lib/a.py"},
	}
}

// TestHashTreeGolden recomputes the documented stream by hand for a small
// tree, so the format cannot drift silently.
func TestHashTreeGolden(t *testing.T) {
	dir := makeTree(t, []treeFile{
		{path: "b/x", content: "x", mode: 0o755},
		{path: "a.txt", content: "hi", mode: 0o644},
		{path: "l", link: "a.txt"},
	})
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	stream := "iatp-tree-v1\n" +
		"f 5:a.txt " + sum("hi") + "\n" +
		"x 3:b/x " + sum("x") + "\n" +
		"l 1:l " + sum("a.txt") + "\n"
	want := HashPrefix + sum(stream)
	if got := hashOf(t, dir, TreeHashOptions{}); got != want {
		t.Fatalf("HashTree = %s, want %s", got, want)
	}
}

func TestHashTreeDeterministic(t *testing.T) {
	want := hashOf(t, makeTree(t, baseTree()), TreeHashOptions{})

	// Created in reverse order, with other non-exec modes, other mtimes.
	files := baseTree()
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	for i := range files {
		if files[i].mode == 0o644 {
			files[i].mode = 0o600
		} else if files[i].mode == 0o755 {
			files[i].mode = 0o700
		}
	}
	dir := makeTree(t, files)
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		_ = os.Chtimes(p, old, old)
		return nil
	})
	if got := hashOf(t, dir, TreeHashOptions{}); got != want {
		t.Fatalf("same tree hashed differently: %s vs %s", got, want)
	}
	// An empty directory does not count.
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, dir, TreeHashOptions{}); got != want {
		t.Fatal("an empty directory changed the hash")
	}
}

func TestHashTreeChanges(t *testing.T) {
	base := hashOf(t, makeTree(t, baseTree()), TreeHashOptions{})
	rows := []struct {
		name   string
		mutate func(files []treeFile) []treeFile
	}{
		{"content", func(f []treeFile) []treeFile { f[0].content += " "; return f }},
		{"executable bit", func(f []treeFile) []treeFile { f[0].mode = 0o744; return f }},
		{"rename", func(f []treeFile) []treeFile { f[2].path = "lib/c.py"; return f }},
		{"move between directories", func(f []treeFile) []treeFile { f[2].path = "a.py"; return f }},
		{"symlink target", func(f []treeFile) []treeFile { f[5].link = "lib/b.py"; return f }},
		{"symlink becomes file", func(f []treeFile) []treeFile {
			f[5] = treeFile{path: "current", content: "lib/a.py", mode: 0o644}
			return f
		}},
		{"empty file added", func(f []treeFile) []treeFile { return append(f, treeFile{path: "empty", mode: 0o644}) }},
		{"file removed", func(f []treeFile) []treeFile { return f[1:] }},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			if got := hashOf(t, makeTree(t, r.mutate(baseTree())), TreeHashOptions{}); got == base {
				t.Fatal("hash did not change")
			}
		})
	}
}

func TestHashTreeExcludeAndErrors(t *testing.T) {
	dir := makeTree(t, baseTree())
	want := hashOf(t, dir, TreeHashOptions{})
	if err := os.MkdirAll(filepath.Join(dir, ".git", "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "objects", "x"), []byte("pack"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, dir, TreeHashOptions{Exclude: []string{".git"}}); got != want {
		t.Fatal("excluded directory changed the hash")
	}
	if got := hashOf(t, dir, TreeHashOptions{}); got == want {
		t.Fatal("not excluded, .git should count")
	}

	if _, err := HashTree(filepath.Join(dir, "main.py"), TreeHashOptions{}); err == nil {
		t.Fatal("a file is not a tree")
	}
	if _, err := HashTree(filepath.Join(dir, "missing"), TreeHashOptions{}); err == nil {
		t.Fatal("missing directory hashed")
	}
}

func TestHashFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HashFile(p)
	if err != nil || got != HashBytes([]byte("a: 1\n")) || !validHash(got) {
		t.Fatalf("HashFile = %s, %v", got, err)
	}
	if _, err := HashFile(p + ".missing"); err == nil {
		t.Fatal("missing file hashed")
	}
}
