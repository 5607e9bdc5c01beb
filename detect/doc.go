// Package detect finds and scrubs sensitive data — credit card numbers, US
// social security numbers, email addresses and secrets — in request and
// response bodies, in one pass over the raw bytes.
//
// It implements section 4 of the IATP protocol. [ScanJSON] and [ScrubJSON]
// validate a JSON document (RFC 8259, valid UTF-8, bounded nesting) while they
// look at every string, every object key (after decoding escapes) and every
// number; [ScanText] and [ScrubText] run the same detectors over arbitrary
// bytes such as server-sent events or log lines.
//
// # Detection rules
//
// Every detector works on ASCII bytes; any other byte (and any byte decoded
// from a \u escape above U+007F) separates words and tokens.
//
//   - credit_card: a run of 13–19 digits, or a first group of 4 digits followed
//     by groups of 3–6 digits, each separated by one space or one dash (the
//     same separator throughout), 13–19 digits in all; when a grouped run is
//     longer, the leftmost, then longest, sub-sequence of whole groups that
//     qualifies is taken. The number must start with 2–6 (the payment-card
//     issuers of ISO/IEC 7812; this keeps millisecond timestamps, which
//     start with 1, from passing one time in ten), pass the Luhn check, and must not be
//     glued to further digits or letters on either side. A JSON number is a
//     card when its integer part is (the whole number is then replaced by the
//     JSON string "[CREDIT_CARD_REDACTED]").
//   - ssn: ddd-dd-dddd, not glued to further digits on either side, nor to a
//     letter on its left (like every finding, it starts a word).
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
// Findings are taken left to right and never overlap: once a span is taken,
// scanning resumes after it, and the span's end counts as a word boundary.
// Because every redaction marker starts with '[' and ends with ']', which no
// detector accepts inside a finding, scrubbing is idempotent: scrubbing a
// scrubbed document changes nothing and finds nothing.
//
// # Scrubbing
//
// Scrubbing replaces exactly the bytes of each finding with its marker (see
// [Kind.Redaction]). In JSON, a finding inside a string that holds escapes is
// mapped back to the escaped bytes it came from, so everything outside the
// finding stays byte-identical to the input, escapes included.
//
// # Cost
//
// The functions keep no state between calls, are safe for concurrent use,
// and do not allocate except to grow dst or, on error, to build the error.
// Their time is linear in the input, whatever it holds.
//
// No regular expressions are involved. Strings are classified eight bytes at
// a time through lookup tables; only where a finding could start (a digit, an
// '@', a symbol, a long token) are the bytes looked at more closely, first
// through bit masks over a 64-byte window (quiet), then, when that cannot rule
// a finding out, one by one (step). Tests check the fast paths against the
// byte-by-byte detectors on random and fuzzed input.
package detect
