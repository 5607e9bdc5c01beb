package cli

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logFlushEvery is how long a log line may wait in the buffer.
const logFlushEvery = 200 * time.Millisecond

// logSink buffers log lines and writes them out at most logFlushEvery
// later (or when 64 KiB are waiting): the sidecar logs a line per
// decision, and a write(2) per request to stderr costs more than the
// decision itself. Lines still buffered when the process is killed are
// lost; the flight recorder, not the log, is the durable record.
type logSink struct {
	mu     sync.Mutex
	w      *bufio.Writer
	timer  *time.Timer
	closed bool
}

func newLogSink(w io.Writer) *logSink {
	return &logSink{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write buffers p, one log line, and arms the flush.
func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed { // after Close: at once
		n, err := l.w.Write(p)
		if err == nil {
			err = l.w.Flush()
		}
		return n, err
	}
	n, err := l.w.Write(p)
	if l.timer == nil {
		l.timer = time.AfterFunc(logFlushEvery, l.flush)
	}
	return n, err
}

func (l *logSink) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	l.timer = nil
}

// Close writes out what is buffered; later lines are written at once.
func (l *logSink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.closed = true
	return l.w.Flush()
}
