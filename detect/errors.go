package detect

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// ErrTooDeep reports a JSON document nested deeper than the allowed depth.
// It reaches callers wrapped in a [*SyntaxError]; test for it with errors.Is.
var ErrTooDeep = errors.New("json nested too deeply")

// ErrInvalidUTF8 reports bytes that are not valid UTF-8 in a JSON document.
// It reaches callers wrapped in a [*SyntaxError]; test for it with errors.Is.
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// SyntaxError describes why a document is not acceptable JSON and where.
// Its message is meant for the developer of the client that sent the
// document, for example "invalid character 'x' after object key at offset 17".
type SyntaxError struct {
	// Offset is the zero-based byte offset of the offending byte, or the
	// length of the document when it ended too early.
	Offset int64
	// Msg says what is wrong, without the offset.
	Msg string
	// Err is ErrTooDeep or ErrInvalidUTF8 when one of those is the cause,
	// nil for other syntax errors.
	Err error
}

// Error returns the message followed by the offset.
func (e *SyntaxError) Error() string {
	return e.Msg + " at offset " + strconv.FormatInt(e.Offset, 10)
}

// Unwrap returns the sentinel cause (ErrTooDeep or ErrInvalidUTF8), if any.
func (e *SyntaxError) Unwrap() error { return e.Err }

// syntaxErr builds a plain syntax error.
func syntaxErr(off int, msg string) error {
	return &SyntaxError{Offset: int64(off), Msg: msg}
}

// quoteChar renders the character starting at b[0] for an error message:
// 'x' for printable characters, '\n' or '\x01' for control bytes.
func quoteChar(b []byte) string {
	if len(b) == 0 {
		return "end of input"
	}
	if b[0] < utf8.RuneSelf {
		if b[0] == '\'' {
			return `'\''`
		}
		return strconv.QuoteRune(rune(b[0]))
	}
	r, _ := utf8.DecodeRune(b)
	return strconv.QuoteRune(r)
}

// badChar builds the error for an unexpected byte at doc[i]: ErrInvalidUTF8
// when the byte does not start a valid UTF-8 sequence, otherwise "invalid
// character 'c' <where>".
func badChar(doc []byte, i int, where string) error {
	if doc[i] >= utf8.RuneSelf {
		if r, size := utf8.DecodeRune(doc[i:]); r == utf8.RuneError && size <= 1 {
			return invalidUTF8(doc, i, where)
		}
	}
	return syntaxErr(i, "invalid character "+quoteChar(doc[i:])+" "+where)
}

// invalidUTF8 builds the error for an invalid UTF-8 sequence at doc[i],
// for example "invalid UTF-8 byte 0xff in string literal".
func invalidUTF8(doc []byte, i int, where string) error {
	return &SyntaxError{
		Offset: int64(i),
		Msg:    "invalid UTF-8 byte 0x" + strconv.FormatUint(uint64(doc[i]), 16) + " " + where,
		Err:    ErrInvalidUTF8,
	}
}

// unexpectedEOF builds the error for a document that ends inside a value.
func unexpectedEOF(doc []byte) error {
	return syntaxErr(len(doc), "unexpected end of JSON input")
}
