package detect

import (
	"bytes"
	"unicode/utf8"
)

// Parsed is the result of ParseJSON.
type Parsed struct {
	// Scrubbed is dst with the scrubbed document appended, exactly as
	// ScrubJSON returns it.
	Scrubbed []byte
	// Found holds the kinds of sensitive data found.
	Found Set
	// Value is the decoded document when Options.Value is set, otherwise
	// nil (as it is for the document null). Objects are map[string]any
	// (when a key repeats, the last member wins, as in encoding/json),
	// arrays []any, strings string (escapes decoded, a lone surrogate
	// escape read as U+FFFD, as in encoding/json; not normalised), numbers
	// Number, true and false bool, null nil. Its strings and numbers share
	// one copy of the document, which they keep alive.
	Value any
}

// ParseJSON validates doc, detects and scrubs it exactly as ScrubJSON does,
// and, when opt.Value is set, decodes it into Parsed.Value, all in one pass
// over doc, so that what the policy reads is what was checked: no second
// parser can disagree with this one. It accepts exactly what ScanJSON
// accepts, with the same errors. On error it returns Parsed{Scrubbed: dst}
// and a *SyntaxError. dst must not overlap doc.
func ParseJSON(dst, doc []byte, opt Options) (Parsed, error) {
	p := getParser(doc, opt)
	defer putParser(p)
	p.det.scrub, p.det.src, p.det.out = true, doc, dst
	if opt.Value {
		p.tree = true
		p.text = string(doc)
	}
	if err := p.parse(); err != nil {
		return Parsed{Scrubbed: dst}, err
	}
	return Parsed{Scrubbed: append(p.det.out, doc[p.det.copied:]...), Found: p.det.set, Value: p.root}, nil
}

// member is a value of an open array or object, with its key in an object.
type member struct {
	key string
	val any
}

// frame is an open array or object: its members are stack[start:], and it
// is the member key of its parent.
type frame struct {
	start int
	key   string
}

// openValue starts an array or object in the tree.
func (p *parser) openValue() {
	p.frames = append(p.frames, frame{start: len(p.stack), key: p.key})
}

// closeValue ends the innermost array or object in the tree.
func (p *parser) closeValue(object bool) {
	f := p.frames[len(p.frames)-1]
	p.frames = p.frames[:len(p.frames)-1]
	members := p.stack[f.start:]
	var v any
	if object {
		m := make(map[string]any, len(members))
		for _, mb := range members {
			m[mb.key] = mb.val
		}
		v = m
	} else {
		a := make([]any, len(members))
		for k, mb := range members {
			a[k] = mb.val
		}
		v = a
	}
	clear(members)
	p.stack = p.stack[:f.start]
	p.key = f.key
	p.value(v)
}

// value adds a complete value to the tree.
func (p *parser) value(v any) {
	if len(p.frames) == 0 {
		p.root = v
		return
	}
	p.stack = append(p.stack, member{key: p.key, val: v})
}

// strValue returns the decoded content of the valid string doc[q:end]
// (quotes included), the last string parsed.
func (p *parser) strValue(q, end int) string {
	if !p.escaped {
		return p.text[q+1 : end-1]
	}
	p.escaped = false // str sets it, the tree clears it, so that plain strings pay nothing
	raw := p.doc[q+1 : end-1]
	b := p.strBuf[:0]
	for k := 0; k < len(raw); {
		if raw[k] != '\\' {
			e := bytes.IndexByte(raw[k:], '\\')
			if e < 0 {
				e = len(raw) - k
			}
			b = append(b, raw[k:k+e]...)
			k += e
			continue
		}
		r, size := jsonUnit(raw, k)
		b = utf8.AppendRune(b, r)
		k += size
	}
	p.strBuf = b
	return string(b)
}
