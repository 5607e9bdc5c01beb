package manifest

// The trust bands of reputation scores (PROTOCOL §10), in hundredths of a
// point: the lowest score of each level. This is the one definition the
// policy (a caller's proven level) and the reputation mesh (levels and
// reporter weights) share.
const (
	BandVerifiedPartner = 800
	BandTrusted         = 600
	BandStandard        = 400
	BandUnknown         = 200
)

// LevelOfScore returns the trust level of a reputation score given in
// hundredths: at least 8.00 is verified_partner, at least 6.00 trusted, at
// least 4.00 standard, at least 2.00 unknown, anything lower untrusted.
func LevelOfScore(hundredths int64) TrustLevel {
	switch {
	case hundredths >= BandVerifiedPartner:
		return VerifiedPartner
	case hundredths >= BandTrusted:
		return Trusted
	case hundredths >= BandStandard:
		return Standard
	case hundredths >= BandUnknown:
		return Unknown
	default:
		return Untrusted
	}
}

// BandFloor returns the lowest score of level's band, in hundredths; 0 for
// untrusted and for an invalid level.
func BandFloor(level TrustLevel) int64 {
	switch level {
	case VerifiedPartner:
		return BandVerifiedPartner
	case Trusted:
		return BandTrusted
	case Standard:
		return BandStandard
	case Unknown:
		return BandUnknown
	}
	return 0
}
