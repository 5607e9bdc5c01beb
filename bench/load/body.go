package main

import (
	"fmt"
	"strconv"
	"strings"
)

// words make the text of generated bodies: lower-case prose with no digits,
// '@', hyphens or long tokens, so no detector of the sidecar (cards, SSNs,
// emails, secrets) fires and the request is allowed.
var words = strings.Fields(`the agent reads the ticket and drafts a reply for the
customer summarising what was tried which steps remain open and who owns
them next while keeping the tone short polite and plain so that a reviewer
can approve it quickly before it goes out with the weekly status report`)

const (
	bodyPrefix = `{"agent_id":"load-client","task":"summarise","params":{"temperature":0.2,"max_tokens":256},"messages":[`
	bodySuffix = `]}`
	msgOpen    = `{"role":"user","content":"`
	msgClose   = `"}`
	// maxContent bounds one message's text, so a large body is many
	// messages, as a conversation or a batch of tool results would be.
	maxContent = 2048
)

// minBodySize is the smallest body jsonBody can build.
var minBodySize = len(bodyPrefix) + len(bodySuffix) + len(msgOpen) + len(msgClose) + 1

// jsonBody returns a JSON chat request of exactly size bytes that the
// sidecar allows: an envelope of parameters and an array of user messages
// whose text is plain prose.
func jsonBody(size int) ([]byte, error) {
	if size < minBodySize {
		return nil, fmt.Errorf("body size %d is below the minimum of %d bytes", size, minBodySize)
	}
	overhead := len(msgOpen) + len(msgClose)
	remaining := size - len(bodyPrefix) - len(bodySuffix)
	// k messages take k*overhead + (k-1) commas + their text.
	k := max(1, (remaining+maxContent+overhead)/(maxContent+overhead+1))
	text := remaining - k*overhead - (k - 1)
	for k > 1 && text < k {
		k--
		text = remaining - k*overhead - (k - 1)
	}
	b := make([]byte, 0, size)
	b = append(b, bodyPrefix...)
	w := 0
	for i := range k {
		if i > 0 {
			b = append(b, ',')
		}
		n := text / k
		if i < text%k {
			n++
		}
		b = append(b, msgOpen...)
		b, w = appendProse(b, n, w)
		b = append(b, msgClose...)
	}
	b = append(b, bodySuffix...)
	if len(b) != size {
		return nil, fmt.Errorf("internal error: built %d bytes, want %d", len(b), size)
	}
	return b, nil
}

// appendProse appends exactly n bytes of words separated by spaces,
// starting at word index w, and returns the next word index.
func appendProse(b []byte, n, w int) ([]byte, int) {
	end := len(b) + n
	for len(b) < end {
		word := words[w%len(words)]
		w++
		if len(b) > end-n { // not the first word
			word = " " + word
		}
		if room := end - len(b); len(word) > room {
			word = word[:room]
		}
		b = append(b, word...)
	}
	return b, w
}

// parseSize reads a byte count: a number, optionally followed by k or m
// (KiB or MiB), as in "1k", "128k" or "1m".
func parseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, strings.TrimSuffix(t, "m")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with k or m (1k, 128k, 1m)", s)
	}
	return n * mult, nil
}

// sizeLabel prints a byte count the way parseSize reads it back, in KiB or
// MiB when it is a whole number of them.
func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
