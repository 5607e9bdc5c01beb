package detect

import (
	"strconv"
	"sync"
)

// DefaultMaxDepth is the nesting depth of arrays and objects accepted when
// Options.MaxDepth is not set.
const DefaultMaxDepth = 256

// Options tunes ScanJSON, ScrubJSON and ParseJSON. The zero value is ready
// to use.
type Options struct {
	// MaxDepth is the deepest nesting of arrays and objects accepted; a
	// deeper document is refused with an error wrapping ErrTooDeep. If zero
	// or negative, DefaultMaxDepth is used.
	MaxDepth int
	// Value makes ParseJSON decode the document into Parsed.Value. ScanJSON
	// and ScrubJSON ignore it.
	Value bool
}

// ScanJSON checks that doc is exactly one JSON value (RFC 8259; any value:
// object, array, scalar; surrounding whitespace allowed), valid UTF-8, nested
// no deeper than MaxDepth, and reports the kinds found in every string
// (object keys included, after decoding escapes such as \u0034) and every
// number, at any depth.
//
// Validation matches encoding/json.Valid, except that invalid UTF-8 is
// refused (ErrInvalidUTF8) and nesting is bounded (ErrTooDeep). Every error
// is a *SyntaxError; the Set is empty whenever the error is not nil.
func ScanJSON(doc []byte, opt Options) (Set, error) {
	p := getParser(doc, opt)
	defer putParser(p)
	if err := p.parse(); err != nil {
		return 0, err
	}
	return p.det.set, nil
}

// ScrubJSON appends to dst a copy of doc where every finding is replaced by
// its redaction marker, in strings and keys and numbers (a number holding a
// card becomes the JSON string "[CREDIT_CARD_REDACTED]"), and reports the
// kinds found. Only the bytes of each finding are replaced — inside a string
// with escapes, the escaped bytes the finding was decoded from — so the
// output is valid JSON, otherwise byte-identical to the input.
//
// It validates doc exactly as ScanJSON does; on error it returns dst
// unchanged, an empty Set and a *SyntaxError. dst must not overlap doc.
func ScrubJSON(dst, doc []byte, opt Options) ([]byte, Set, error) {
	p := getParser(doc, opt)
	defer putParser(p)
	p.det.scrub, p.det.src, p.det.out = true, doc, dst
	if err := p.parse(); err != nil {
		return dst, 0, err
	}
	return append(p.det.out, doc[p.det.copied:]...), p.det.set, nil
}

// parser validates one JSON document and feeds its strings and numbers to
// the detector, and builds the value tree when asked to. Parsers are pooled
// so that the common path allocates nothing.
type parser struct {
	doc      []byte
	maxDepth int
	depth    int
	objects  []uint64 // bit d is set when nesting level d is an object
	buf      []byte   // normalised content of a string being detected
	det      detector

	// The value tree (ParseJSON with Options.Value).
	tree    bool
	text    string   // the document; the tree's strings and numbers are slices of it
	stack   []member // the members of the open arrays and objects
	frames  []frame  // the open arrays and objects
	key     string   // the key of the member being parsed
	root    any
	strBuf  []byte // decoded content of a string with escapes
	escaped bool   // the last string parsed has escapes (cleared by strValue)
}

// Bounds on what a pooled parser keeps between uses.
const (
	poolMaxBuf     = 64 << 10
	poolMaxLevels  = 64 // words of objects: 4096 levels
	poolMaxMembers = 4096
)

var parserPool = sync.Pool{New: func() any {
	return &parser{objects: make([]uint64, DefaultMaxDepth/64), buf: make([]byte, 0, 1024)}
}}

func getParser(doc []byte, opt Options) *parser {
	p := parserPool.Get().(*parser)
	p.doc, p.maxDepth, p.depth = doc, opt.MaxDepth, 0
	if p.maxDepth <= 0 {
		p.maxDepth = DefaultMaxDepth
	}
	return p
}

func putParser(p *parser) {
	p.reset()
	parserPool.Put(p)
}

// reset drops the references a parser holds to its last document and
// output, and the buffers that grew past what the pool may keep.
func (p *parser) reset() {
	p.doc = nil
	p.det = detector{}
	if cap(p.buf) > poolMaxBuf {
		p.buf = make([]byte, 0, 1024)
	}
	if p.tree {
		clear(p.stack[:cap(p.stack)])
		clear(p.frames[:cap(p.frames)])
		p.stack, p.frames = p.stack[:0], p.frames[:0]
		if cap(p.stack) > poolMaxMembers {
			p.stack = nil
		}
		if cap(p.frames) > poolMaxMembers {
			p.frames = nil
		}
		if cap(p.strBuf) > poolMaxBuf {
			p.strBuf = nil
		}
		p.tree, p.text, p.key, p.root = false, "", "", nil
	}
	p.escaped = false
	if len(p.objects) > poolMaxLevels {
		p.objects = make([]uint64, DefaultMaxDepth/64)
	}
}

// open enters an array or object at doc[i].
func (p *parser) open(i int, object bool) error {
	if p.depth >= p.maxDepth {
		return &SyntaxError{
			Offset: int64(i),
			Msg:    "exceeded max nesting depth of " + strconv.Itoa(p.maxDepth),
			Err:    ErrTooDeep,
		}
	}
	w, b := p.depth>>6, uint(p.depth&63)
	if w == len(p.objects) {
		p.objects = append(p.objects, 0)
	}
	if object {
		p.objects[w] |= 1 << b
	} else {
		p.objects[w] &^= 1 << b
	}
	p.depth++
	if p.tree {
		p.openValue()
	}
	return nil
}

// inObject reports whether the innermost open container is an object.
func (p *parser) inObject() bool {
	d := p.depth - 1
	return p.objects[d>>6]&(1<<uint(d&63)) != 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(doc []byte, i int) int {
	for i < len(doc) && isSpace(doc[i]) {
		i++
	}
	return i
}

// parse validates p.doc, running the detector over its strings and numbers.
func (p *parser) parse() error {
	doc := p.doc
	n := len(doc)
	var err error
	i := skipSpace(doc, 0)

value:
	if i >= n {
		return unexpectedEOF(doc)
	}
	switch c := doc[i]; c {
	case '{':
		if err = p.open(i, true); err != nil {
			return err
		}
		if i = skipSpace(doc, i+1); i < n && doc[i] == '}' {
			p.depth--
			if p.tree {
				p.closeValue(true)
			}
			i++
			goto next
		}
		goto key
	case '[':
		if err = p.open(i, false); err != nil {
			return err
		}
		if i = skipSpace(doc, i+1); i < n && doc[i] == ']' {
			p.depth--
			if p.tree {
				p.closeValue(false)
			}
			i++
			goto next
		}
		goto value
	case '"':
		start := i
		if i, err = p.str(i); err == nil && p.tree {
			p.value(p.strValue(start, i))
		}
	case 't':
		if i, err = literal(doc, i, "true"); p.tree {
			p.value(true)
		}
	case 'f':
		if i, err = literal(doc, i, "false"); p.tree {
			p.value(false)
		}
	case 'n':
		if i, err = literal(doc, i, "null"); p.tree {
			p.value(nil)
		}
	default:
		if c != '-' && !isDigit(c) {
			return badChar(doc, i, "looking for beginning of value")
		}
		start := i
		if i, err = p.number(i); err == nil && p.tree {
			p.value(Number(p.text[start:i]))
		}
	}
	if err != nil {
		return err
	}

next:
	i = skipSpace(doc, i)
	if p.depth == 0 {
		if i < n {
			return badChar(doc, i, "after top-level value")
		}
		return nil
	}
	if i >= n {
		return unexpectedEOF(doc)
	}
	if p.inObject() {
		switch doc[i] {
		case ',':
			i = skipSpace(doc, i+1)
			goto key
		case '}':
			p.depth--
			if p.tree {
				p.closeValue(true)
			}
			i++
			goto next
		}
		return badChar(doc, i, "after object key:value pair")
	}
	switch doc[i] {
	case ',':
		i = skipSpace(doc, i+1)
		goto value
	case ']':
		p.depth--
		if p.tree {
			p.closeValue(false)
		}
		i++
		goto next
	}
	return badChar(doc, i, "after array element")

key:
	if i >= n {
		return unexpectedEOF(doc)
	}
	if doc[i] != '"' {
		return badChar(doc, i, "looking for beginning of object key string")
	}
	{
		start := i
		if i, err = p.str(i); err != nil {
			return err
		}
		if p.tree {
			p.key = p.strValue(start, i)
		}
	}
	if i = skipSpace(doc, i); i >= n {
		return unexpectedEOF(doc)
	}
	if doc[i] != ':' {
		return badChar(doc, i, "after object key")
	}
	i = skipSpace(doc, i+1)
	goto value
}

// literal checks the literal word at doc[i].
func literal(doc []byte, i int, word string) (int, error) {
	for k := 1; k < len(word); k++ {
		if i+k >= len(doc) {
			return 0, unexpectedEOF(doc)
		}
		if doc[i+k] != word[k] {
			return 0, badChar(doc, i+k, "in literal "+word+" (expecting "+strconv.QuoteRune(rune(word[k]))+")")
		}
	}
	return i + len(word), nil
}

// number validates the number at doc[i] and looks for a card in it.
func (p *parser) number(i int) (int, error) {
	doc := p.doc
	n := len(doc)
	start := i
	if doc[i] == '-' {
		if i++; i >= n {
			return 0, unexpectedEOF(doc)
		}
		if !isDigit(doc[i]) {
			return 0, badChar(doc, i, "in numeric literal")
		}
	}
	intStart := i
	if doc[i] == '0' {
		i++
	} else {
		for i < n && isDigit(doc[i]) {
			i++
		}
	}
	intEnd := i
	if i < n && doc[i] == '.' {
		if i++; i >= n {
			return 0, unexpectedEOF(doc)
		}
		if !isDigit(doc[i]) {
			return 0, badChar(doc, i, "after decimal point in numeric literal")
		}
		for i < n && isDigit(doc[i]) {
			i++
		}
	}
	exp := false
	if i < n && (doc[i] == 'e' || doc[i] == 'E') {
		exp = true
		if i++; i < n && (doc[i] == '+' || doc[i] == '-') {
			i++
		}
		if i >= n {
			return 0, unexpectedEOF(doc)
		}
		if !isDigit(doc[i]) {
			return 0, badChar(doc, i, "in exponent of numeric literal")
		}
		for i < n && isDigit(doc[i]) {
			i++
		}
	}
	// Without an exponent, a card has 13–19 digits before the point (and
	// none but zeros after it); with one, its exact value decides.
	if l := intEnd - intStart; (exp || (l >= cardMinDigits && l <= cardMaxDigits)) && numberIsCard(doc[start:i]) {
		d := &p.det
		d.set |= Set(CreditCard)
		if d.scrub {
			d.emit(start, i, CreditCard.Redaction(), `"`)
		}
	}
	return i, nil
}
