package detect

import "strconv"

// Kind is one kind of sensitive data. Kinds are distinct bits, so they can be
// combined into a [Set].
type Kind uint8

// The kinds of sensitive data, in their fixed reporting order.
const (
	// CreditCard is a payment card number that passes the Luhn check.
	CreditCard Kind = 1 << iota
	// SSN is a US social security number written ddd-dd-dddd.
	SSN
	// Email is an email address.
	Email
	// Secret is a credential: a well-known token form or a long high-entropy
	// string.
	Secret
)

// allKinds lists every kind in reporting order.
var allKinds = [...]Kind{CreditCard, SSN, Email, Secret}

// String returns the kind's name as used in policy (the CEL variable
// sensitive) and in records: "credit_card", "ssn", "email" or "secret".
// Any other value prints as "Kind(0x..)".
func (k Kind) String() string {
	switch k {
	case CreditCard:
		return "credit_card"
	case SSN:
		return "ssn"
	case Email:
		return "email"
	case Secret:
		return "secret"
	}
	return "Kind(0x" + strconv.FormatUint(uint64(k), 16) + ")"
}

// Redaction returns the marker that replaces a finding of this kind, such as
// "[CREDIT_CARD_REDACTED]". Any value that is not a single known kind gets
// the generic "[REDACTED]".
func (k Kind) Redaction() string {
	switch k {
	case CreditCard:
		return "[CREDIT_CARD_REDACTED]"
	case SSN:
		return "[SSN_REDACTED]"
	case Email:
		return "[EMAIL_REDACTED]"
	case Secret:
		return "[SECRET_REDACTED]"
	}
	return "[REDACTED]"
}

// Set is a set of kinds; its zero value is the empty set.
type Set uint8

// Has reports whether s holds every bit of k. Has of the zero Kind is false.
func (s Set) Has(k Kind) bool {
	return k != 0 && s&Set(k) == Set(k)
}

// Names returns the names of the kinds in s, in the fixed order
// credit_card, ssn, email, secret. It returns an empty, non-nil slice for the
// empty set, so that it encodes as a JSON array.
func (s Set) Names() []string {
	names := make([]string, 0, 4)
	for _, k := range allKinds {
		if s.Has(k) {
			names = append(names, k.String())
		}
	}
	return names
}

// String returns the names in s joined by commas, or "none" for the empty set.
func (s Set) String() string {
	if s&Set(CreditCard|SSN|Email|Secret) == 0 {
		return "none"
	}
	b := make([]byte, 0, 32)
	for _, k := range allKinds {
		if s.Has(k) {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, k.String()...)
		}
	}
	return string(b)
}
