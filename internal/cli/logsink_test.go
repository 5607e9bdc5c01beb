package cli

import (
	"strings"
	"testing"
	"time"
)

func TestLogSink(t *testing.T) {
	var out syncBuffer
	l := newLogSink(&out)
	_, _ = l.Write([]byte("one\n"))
	if out.String() != "" {
		t.Fatalf("written at once: %q", out.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\n" {
		if time.Now().After(deadline) {
			t.Fatalf("not flushed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A full buffer is written out without waiting.
	big := strings.Repeat("x", 100<<10) + "\n"
	_, _ = l.Write([]byte(big))
	if len(out.String()) < 64<<10 {
		t.Errorf("a buffer past 64 KiB waited: %d bytes out", len(out.String()))
	}
	_, _ = l.Write([]byte("last\n"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "last\n") {
		t.Errorf("Close did not flush")
	}
	_, _ = l.Write([]byte("after\n"))
	if !strings.HasSuffix(out.String(), "after\n") {
		t.Errorf("a line after Close waited")
	}
}
