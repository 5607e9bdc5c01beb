// Package detect finds and scrubs sensitive data — credit card numbers, US
// social security numbers, email addresses and secrets — in request and
// response bodies, in one pass over the raw bytes.
//
// It implements section 4 of the IATP protocol. [ScanJSON] and [ScrubJSON]
// validate a JSON document (RFC 8259, valid UTF-8, bounded nesting) while they
// look at every string, every object key (after decoding escapes) and every
// number; [ParseJSON] does the same and, in the same pass, can decode the
// document for the policy engine, so that nothing else parses it; [ScanText]
// and [ScrubText] run the same detectors over arbitrary bytes such as a
// path, a query value, a header, server-sent events or log lines.
//
// # Reading characters
//
// The detectors work on ASCII. Every other character reads as one ASCII
// byte, as a group dash, or as a word separator:
//
//   - a decimal digit of any script (Unicode category Nd: full-width,
//     Arabic-Indic, Devanagari, mathematical…) reads as its value;
//   - a character whose NFKC form is one ASCII character reads as that
//     character: no-break spaces (U+00A0, U+2007, U+202F) and the other
//     Unicode spaces as ' ', full-width letters and signs (Ａ, ＠, ．, －) and
//     the mathematical, circled and superscript letters and digits as
//     themselves;
//   - the Unicode dashes U+2010–U+2015 and the minus sign U+2212 (and what
//     NFKC maps onto them, such as U+FE58 and the superscript minus) read
//     as a dash between the groups of a card number or an SSN, and as
//     nothing else (they do not join the words around them into an email
//     address or a token);
//   - any other character (é, 中, 😀, a soft hyphen, a zero-width space, a
//     lone surrogate escape, a byte of invalid UTF-8 in a text) separates
//     words.
//
// Characters are read one at a time: NFKC's composition of a character with
// the combining marks after it is not applied. In JSON, a character may be
// written raw or as escapes (\u0034 reads as 4, \uff14 as 4, \ud835\udfd2 as
// 4, \u00a0 as a space), in strings and keys alike.
//
// # Detection rules
//
//   - credit_card: 13–19 digits in one or more groups of any length, each
//     group after the first following one separator: a space, a dash, a
//     dot, an underscore or a slash (as read above, so also a no-break space
//     or a Unicode dash). The separators of one number are of one class —
//     spaces, dashes, dots, underscores or slashes — because mixing them
//     would join dates, IP addresses and phone numbers written next to each
//     other ("2024-01-15 2024-01-16", "192.168.100.200 172.16.254.254")
//     into runs of 13–19 digits, one in ten of which passes the Luhn
//     check; within the
//     class of spaces or of dashes, the forms may mix (a hyphen and an en
//     dash, as word processors produce them; a space and a no-break space,
//     as copied from a web page). The number must start with 2–6 (the
//     payment-card issuers of ISO/IEC 7812; this keeps millisecond
//     timestamps, which start with 1, from passing one time in ten), pass
//     the Luhn check, and not be glued to further digits or letters on
//     either side (a group glued to a letter on its right ends the run
//     before it). It starts where a group starts, and the leftmost start
//     wins; when the groups from there hold more than one candidate, the
//     longest run of whole groups that qualifies is taken. No card starts
//     inside a UUID (8-4-4-4-12 hex digits standing alone): about one
//     random UUID in 20,000 would otherwise hold a 16-digit card.
//   - JSON numbers: a number is a card when its exact decimal value is an
//     integer of 13–19 digits that qualifies as above, whatever its form:
//     4532015112830366, 4.532015112830366e15, 4532015112830366.0,
//     45320151128303660e-1 and -4532015112830366E+0 are all the card,
//     4.5320151128303665e15 (not an integer) is not. The value is worked out
//     on the digits, in time linear in the number's length whatever its
//     exponent (1e400 and 1e-999999 are valid JSON). The whole number is
//     then replaced by the JSON string "[CREDIT_CARD_REDACTED]".
//   - ssn: ddd-dd-dddd, the two separators both dashes or both spaces (as
//     read above: 123-45-6789, 123 45 6789, 123–45–6789, １２３－４５－６７８９),
//     not glued to further digits on either side, nor to a letter on its
//     left (like every finding, it starts a word). Where a group of three
//     digits starts both an SSN and a card, the SSN is taken.
//   - email: a local part of [A-Za-z0-9._%+-], '@', then at least two labels of
//     [A-Za-z0-9-] separated by single dots, the last of which is at least two
//     letters (it may end before a dash, as in "a@example.com-"). The longest
//     such domain is taken.
//   - secret: AWS access key ids (AKIA or ASIA + 16 of [0-9A-Z]), GitHub tokens
//     (ghp_, gho_, ghu_, ghs_, ghr_ + 36 of [A-Za-z0-9]; github_pat_ + at
//     least 22 of [A-Za-z0-9_]), Slack tokens (xox[abposr]- + at least 10 of
//     [A-Za-z0-9-]), sk- API keys (at least 20 of [A-Za-z0-9_-] after the
//     prefix), JWTs (eyJ… three base64url segments separated by dots, the
//     last of which may be empty), PEM private key blocks (from
//     -----BEGIN … PRIVATE KEY----- through the next -----END … PRIVATE
//     KEY----- line within 64 KiB (and, in JSON, in the same string), or
//     through the base64 body when there is none), and high-entropy tokens: a
//     maximal run of at
//     least 32 characters of [A-Za-z0-9+/=_-] with more than 4.5 bits of
//     Shannon entropy per character. The prefixed forms must start a word
//     (not be preceded by a letter or digit) and the fixed-length forms must
//     end one.
//
// Letters and digits above are ASCII as read: full-width letters glue to a
// card on its left as 'x' would.
//
// Findings are taken left to right and never overlap: once a span is taken,
// scanning resumes after it, and the span's end counts as a word boundary.
// Because every redaction marker starts with '[' and ends with ']', which no
// detector accepts inside a finding, scrubbing is idempotent: scrubbing a
// scrubbed document changes nothing and finds nothing.
//
// # Scrubbing
//
// Scrubbing replaces exactly the bytes of each finding with its marker (see
// [Kind.Redaction]): the whole characters it was read from, however many
// bytes each takes (a full-width digit takes three, \uff14 six), and in JSON
// the escaped bytes it was decoded from, so everything outside the finding
// stays byte-identical to the input, escapes included.
//
// # The decoded document
//
// [ParseJSON] with [Options] Value set builds the document's value as
// map[string]any, []any, string (escapes decoded, not normalised), [Number],
// bool and nil while it validates, detects and scrubs. The last of repeated
// keys wins, as in encoding/json. It accepts exactly what ScanJSON accepts,
// since it is the same parser.
//
// # Cost
//
// The functions keep no state between calls, are safe for concurrent use,
// and do not allocate except to grow dst, on error to build the error, to
// normalise a text longer than 64 KiB that needs it (shorter ones use
// pooled buffers), and to build ParseJSON's value. Their time is linear in
// the input, whatever it holds.
//
// No regular expressions are involved. Strings are classified eight bytes at
// a time through lookup tables; only where a finding could start (a digit, an
// '@', a symbol, a long token) are the bytes looked at more closely, first
// through bit masks over a 64-byte window (quiet), then, when that cannot rule
// a finding out, one by one (step). ASCII, and text whose other characters
// all separate words, is scanned as it is; a string or a text holding a
// character that reads as something else (a digit, a space, a dash, a
// letter) is scanned again, normalised into a copy, one byte per character,
// and the findings mapped back. Tests check the fast paths against the
// byte-by-byte detectors, run over a normalisation built from
// golang.org/x/text, on random and fuzzed input.
package detect
