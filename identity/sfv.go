package identity

// A strict subset of RFC 8941 Structured Field Values: dictionaries whose
// members are items or inner lists, with parameters; bare items of type
// integer, decimal, string, token, byte sequence and boolean. Written by
// hand because the standard library has none and only this much is needed
// for Signature-Input, Signature and Content-Digest. Stricter than the RFC
// on purpose: duplicate dictionary keys and duplicate parameters are refused
// (the RFC lets the last one win, which would let an intermediary's copy
// shadow the signer's), byte sequences must be canonical padded base64, and
// every input is bounded.

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits of the structured-field parser.
const (
	// MaxStructuredFieldBytes bounds one Signature-Input, Signature or
	// Content-Digest field value (all lines of it, joined).
	MaxStructuredFieldBytes = 8 << 10
	maxSFMembers            = 32
	maxSFInnerItems         = 64
	maxSFParams             = 32
)

type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfDecimal
	sfString
	sfToken
	sfBinary
	sfBoolean
)

// sfItem is a bare item. str holds the value of strings and tokens and the
// text of decimals; bin holds byte sequences.
type sfItem struct {
	kind    sfKind
	str     string
	integer int64
	bin     []byte
	boolean bool
}

type sfParam struct {
	key   string
	value sfItem
}

type sfParams []sfParam

// get returns the parameter named key.
func (ps sfParams) get(key string) (sfItem, bool) {
	for _, p := range ps {
		if p.key == key {
			return p.value, true
		}
	}
	return sfItem{}, false
}

type sfInnerItem struct {
	item   sfItem
	params sfParams
}

// sfMember is one dictionary member: an item (inner false) or an inner list.
type sfMember struct {
	key    string
	inner  bool
	item   sfItem
	list   []sfInnerItem
	params sfParams
}

type sfParser struct {
	s   string
	pos int
}

func (p *sfParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: structured field at byte %d: %s", ErrMalformed, p.pos, fmt.Sprintf(format, args...))
}

func (p *sfParser) eof() bool { return p.pos >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.pos]
}

func (p *sfParser) skipSP() {
	for !p.eof() && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *sfParser) skipOWS() {
	for !p.eof() && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// parseDictionary parses an RFC 8941 dictionary (section 4.2.2).
func parseDictionary(s string) ([]sfMember, error) {
	if len(s) > MaxStructuredFieldBytes {
		return nil, fmt.Errorf("%w: structured field longer than %d bytes", ErrMalformed, MaxStructuredFieldBytes)
	}
	p := &sfParser{s: strings.Trim(s, " ")}
	if p.eof() {
		return nil, p.errorf("empty dictionary")
	}
	members := make([]sfMember, 0, 2)
	for !p.eof() {
		if len(members) == maxSFMembers {
			return nil, p.errorf("more than %d members", maxSFMembers)
		}
		key, err := p.parseKey()
		if err != nil {
			return nil, err
		}
		for _, m := range members {
			if m.key == key {
				return nil, p.errorf("duplicate key %q", key)
			}
		}
		m := sfMember{key: key}
		if p.peek() == '=' {
			p.pos++
			if p.peek() == '(' {
				m.inner = true
				if m.list, err = p.parseInnerList(); err != nil {
					return nil, err
				}
			} else if m.item, err = p.parseBareItem(); err != nil {
				return nil, err
			}
		} else {
			m.item = sfItem{kind: sfBoolean, boolean: true}
		}
		if m.params, err = p.parseParams(); err != nil {
			return nil, err
		}
		members = append(members, m)
		p.skipOWS()
		if p.eof() {
			break
		}
		if p.peek() != ',' {
			return nil, p.errorf("expected ',' after member %q", key)
		}
		p.pos++
		p.skipOWS()
		if p.eof() {
			return nil, p.errorf("trailing comma")
		}
	}
	return members, nil
}

func (p *sfParser) parseInnerList() ([]sfInnerItem, error) {
	p.pos++ // '('
	items := make([]sfInnerItem, 0, 8)
	for {
		p.skipSP()
		if p.eof() {
			return nil, p.errorf("unterminated inner list")
		}
		if p.peek() == ')' {
			p.pos++
			return items, nil
		}
		if len(items) == maxSFInnerItems {
			return nil, p.errorf("more than %d items in an inner list", maxSFInnerItems)
		}
		item, err := p.parseBareItem()
		if err != nil {
			return nil, err
		}
		params, err := p.parseParams()
		if err != nil {
			return nil, err
		}
		items = append(items, sfInnerItem{item: item, params: params})
		if p.eof() {
			return nil, p.errorf("unterminated inner list")
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return nil, p.errorf("expected ' ' or ')' in inner list")
		}
	}
}

func (p *sfParser) parseParams() (sfParams, error) {
	var params sfParams
	for p.peek() == ';' {
		if params == nil {
			params = make(sfParams, 0, 4)
		}
		p.pos++
		p.skipSP()
		if len(params) == maxSFParams {
			return nil, p.errorf("more than %d parameters", maxSFParams)
		}
		key, err := p.parseKey()
		if err != nil {
			return nil, err
		}
		if _, dup := params.get(key); dup {
			return nil, p.errorf("duplicate parameter %q", key)
		}
		value := sfItem{kind: sfBoolean, boolean: true}
		if p.peek() == '=' {
			p.pos++
			if value, err = p.parseBareItem(); err != nil {
				return nil, err
			}
		}
		params = append(params, sfParam{key: key, value: value})
	}
	return params, nil
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool   { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// isTChar reports an RFC 9110 tchar.
func isTChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *sfParser) parseKey() (string, error) {
	start := p.pos
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", p.errorf("key must start with a lowercase letter or '*'")
	}
	for !p.eof() {
		c := p.s[p.pos]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.pos++
	}
	return p.s[start:p.pos], nil
}

func (p *sfParser) parseBareItem() (sfItem, error) {
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.parseNumber()
	case c == '"':
		return p.parseString()
	case c == '*' || isAlpha(c):
		return p.parseToken(), nil
	case c == ':':
		return p.parseBinary()
	case c == '?':
		return p.parseBoolean()
	case p.eof():
		return sfItem{}, p.errorf("missing value")
	default:
		return sfItem{}, p.errorf("unexpected character %q", c)
	}
}

func (p *sfParser) parseNumber() (sfItem, error) {
	start := p.pos
	if p.peek() == '-' {
		p.pos++
	}
	if !isDigit(p.peek()) {
		return sfItem{}, p.errorf("number without digits")
	}
	digitsStart, dot := p.pos, -1
	for !p.eof() {
		c := p.s[p.pos]
		if c == '.' && dot < 0 {
			if p.pos-digitsStart > 12 {
				return sfItem{}, p.errorf("decimal with more than 12 integer digits")
			}
			dot = p.pos
		} else if !isDigit(c) {
			break
		}
		p.pos++
		if dot < 0 && p.pos-digitsStart > 15 {
			return sfItem{}, p.errorf("integer with more than 15 digits")
		}
	}
	text := p.s[start:p.pos]
	if dot < 0 {
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return sfItem{}, p.errorf("bad integer")
		}
		return sfItem{kind: sfInteger, integer: n}, nil
	}
	if frac := p.pos - dot - 1; frac < 1 || frac > 3 {
		return sfItem{}, p.errorf("decimal needs 1 to 3 fraction digits")
	}
	return sfItem{kind: sfDecimal, str: text}, nil
}

func (p *sfParser) parseString() (sfItem, error) {
	p.pos++ // '"'
	// Fast path: no escapes, so the value is a slice of the input.
	for i := p.pos; i < len(p.s); i++ {
		c := p.s[i]
		if c == '"' {
			v := p.s[p.pos:i]
			p.pos = i + 1
			return sfItem{kind: sfString, str: v}, nil
		}
		if c == '\\' || c < 0x20 || c > 0x7e {
			break
		}
	}
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.pos]
		p.pos++
		switch {
		case c == '\\':
			if p.eof() {
				return sfItem{}, p.errorf("unterminated string")
			}
			e := p.s[p.pos]
			p.pos++
			if e != '"' && e != '\\' {
				return sfItem{}, p.errorf("bad escape in string")
			}
			b.WriteByte(e)
		case c == '"':
			return sfItem{kind: sfString, str: b.String()}, nil
		case c < 0x20 || c > 0x7e:
			return sfItem{}, p.errorf("non-printable character in string")
		default:
			b.WriteByte(c)
		}
	}
	return sfItem{}, p.errorf("unterminated string")
}

func (p *sfParser) parseToken() sfItem {
	start := p.pos
	p.pos++
	for !p.eof() {
		c := p.s[p.pos]
		if !isTChar(c) && c != ':' && c != '/' {
			break
		}
		p.pos++
	}
	return sfItem{kind: sfToken, str: p.s[start:p.pos]}
}

func (p *sfParser) parseBinary() (sfItem, error) {
	p.pos++ // ':'
	end := strings.IndexByte(p.s[p.pos:], ':')
	if end < 0 {
		return sfItem{}, p.errorf("unterminated byte sequence")
	}
	raw, err := b64.DecodeString(p.s[p.pos : p.pos+end])
	if err != nil {
		return sfItem{}, p.errorf("byte sequence is not canonical padded base64")
	}
	p.pos += end + 1
	return sfItem{kind: sfBinary, bin: raw}, nil
}

func (p *sfParser) parseBoolean() (sfItem, error) {
	p.pos++ // '?'
	switch p.peek() {
	case '1':
		p.pos++
		return sfItem{kind: sfBoolean, boolean: true}, nil
	case '0':
		p.pos++
		return sfItem{kind: sfBoolean, boolean: false}, nil
	}
	return sfItem{}, p.errorf("boolean must be ?0 or ?1")
}

// appendSFItem serializes a bare item (RFC 8941 section 4.1.3).
func appendSFItem(b []byte, it sfItem) ([]byte, error) {
	switch it.kind {
	case sfInteger:
		return strconv.AppendInt(b, it.integer, 10), nil
	case sfString:
		b = append(b, '"')
		for i := 0; i < len(it.str); i++ {
			c := it.str[i]
			if c < 0x20 || c > 0x7e {
				return nil, fmt.Errorf("%w: string holds a non-printable character", ErrMalformed)
			}
			if c == '"' || c == '\\' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		return append(b, '"'), nil
	case sfToken:
		return append(b, it.str...), nil
	case sfBinary:
		b = append(b, ':')
		b = b64.AppendEncode(b, it.bin)
		return append(b, ':'), nil
	case sfBoolean:
		if it.boolean {
			return append(b, "?1"...), nil
		}
		return append(b, "?0"...), nil
	}
	return nil, fmt.Errorf("%w: cannot serialize this structured field value", ErrMalformed)
}

// appendSFParams serializes parameters (RFC 8941 section 4.1.1.2).
func appendSFParams(b []byte, ps sfParams) ([]byte, error) {
	var err error
	for _, p := range ps {
		b = append(b, ';')
		b = append(b, p.key...)
		if p.value.kind == sfBoolean && p.value.boolean {
			continue
		}
		b = append(b, '=')
		if b, err = appendSFItem(b, p.value); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendSFInnerList serializes an inner list with its parameters.
func appendSFInnerList(b []byte, items []sfInnerItem, ps sfParams) ([]byte, error) {
	var err error
	b = append(b, '(')
	for i, it := range items {
		if i > 0 {
			b = append(b, ' ')
		}
		if b, err = appendSFItem(b, it.item); err != nil {
			return nil, err
		}
		if b, err = appendSFParams(b, it.params); err != nil {
			return nil, err
		}
	}
	b = append(b, ')')
	return appendSFParams(b, ps)
}
