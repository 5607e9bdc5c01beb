package manifest

import "fmt"

// Severity grades a finding about a manifest.
type Severity string

// Severities, from the most to the least serious.
const (
	// SeverityError makes a manifest invalid: a field is missing, of the
	// wrong type or out of range. Nothing uses an invalid manifest: a
	// sidecar refuses to start with it.
	SeverityError Severity = "error"
	// SeverityHighRisk marks a well-formed manifest whose claims make the
	// agent unsafe to depend on (PROTOCOL §1: an untrusted agent with no
	// reversibility). A sidecar serves it and logs the finding at start;
	// iatp verify and iatp scan report it and exit 1.
	SeverityHighRisk Severity = "high-risk"
	// SeverityWarning marks a doubtful but allowed claim, a default that
	// was applied, or a difference with the Python package's peers.
	SeverityWarning Severity = "warning"
)

// Verdict sums up a manifest's findings in one word that every reader
// (iatp verify, iatp scan, the sidecar at start-up) reports alike.
type Verdict string

// Verdicts.
const (
	// VerdictValid: no errors and no high-risk findings (warnings allowed).
	VerdictValid Verdict = "valid"
	// VerdictHighRisk: well-formed, but with at least one high-risk finding.
	VerdictHighRisk Verdict = "high-risk"
	// VerdictInvalid: at least one error.
	VerdictInvalid Verdict = "invalid"
)

// Findings are everything that is wrong or doubtful in a manifest, in three
// severities, each list in a stable order. It is the one validation shared
// by every reader of a manifest, so that they report the same findings in
// the same words (Problem.String).
type Findings struct {
	// Errors make the manifest invalid.
	Errors []Problem `json:"errors"`
	// HighRisk are claims that make a well-formed manifest unsafe to use.
	HighRisk []Problem `json:"high_risk"`
	// Warnings are doubtful claims, applied defaults and peer differences.
	Warnings []Problem `json:"warnings"`
}

// Verdict returns invalid when there are errors, else high-risk when there
// are high-risk findings, else valid.
func (f *Findings) Verdict() Verdict {
	switch {
	case len(f.Errors) > 0:
		return VerdictInvalid
	case len(f.HighRisk) > 0:
		return VerdictHighRisk
	}
	return VerdictValid
}

// FieldsValid reports whether every field was readable and valid, so that
// the manifest can be scored and served, even if it is high-risk.
func (f *Findings) FieldsValid() bool { return len(f.Errors) == 0 }

// All returns every finding: errors, then high-risk findings, then warnings.
func (f *Findings) All() []Problem {
	all := make([]Problem, 0, len(f.Errors)+len(f.HighRisk)+len(f.Warnings))
	all = append(all, f.Errors...)
	all = append(all, f.HighRisk...)
	return append(all, f.Warnings...)
}

// Assess decodes a manifest written as JSON or YAML in either shape and
// returns it with every finding at once. The manifest holds every field
// that could be read, even when there are errors, so that a caller can show
// what it saw. The error is non-nil (wrapping ErrNotManifest) only when data
// is not a manifest document at all.
func Assess(data []byte) (*Manifest, *Findings, error) {
	m, errs, err := read(data)
	if err != nil {
		return nil, nil, err
	}
	f := m.findings()
	f.Errors = append(f.Errors, errs...)
	return m, f, nil
}

// Findings returns the findings about a manifest that is already built: the
// errors of its values (none for a manifest Parse accepted), its high-risk
// findings and its warnings. It is what Assess reports for the same document.
func (m *Manifest) Findings() *Findings {
	f := m.findings()
	f.Errors = append(f.Errors, m.validate()...)
	return f
}

// Warnings returns the high-risk findings and the warnings of a manifest
// that parsed, for a sidecar to log at start-up: the same findings, in the
// same words, that iatp verify and iatp scan report for it.
func (m *Manifest) Warnings() []Problem {
	f := m.findings()
	return append(f.HighRisk, f.Warnings...)
}

// findings returns the high-risk findings and warnings of m, with Errors
// empty (not nil).
func (m *Manifest) findings() *Findings {
	f := &Findings{Errors: []Problem{}, HighRisk: []Problem{}, Warnings: []Problem{}}
	f.Warnings = append(f.Warnings, m.notes...)
	if m.TrustLevel == Untrusted && m.Reversibility.Level == ReversibilityNone {
		f.HighRisk = append(f.HighRisk, Problem{Severity: SeverityHighRisk, Field: "trust_level",
			Message: "an untrusted agent without reversibility cannot be used safely: nothing it does can be undone (declare reversibility or do not publish it)"})
	}
	if m.Privacy.RetentionPolicy.Indefinite() && m.TrustLevel.Valid() && m.TrustLevel.AtLeast(Standard) {
		f.Warnings = append(f.Warnings, Problem{Severity: SeverityWarning, Field: "privacy.retention_policy",
			Message: fmt.Sprintf("%s retention with trust level %s: callers' data is kept indefinitely", m.Privacy.RetentionPolicy, m.TrustLevel)})
	}
	if m.Privacy.HumanInLoop && m.TrustLevel == VerifiedPartner {
		f.Warnings = append(f.Warnings, Problem{Severity: SeverityWarning, Field: "privacy.human_in_loop",
			Message: "a verified partner whose humans review callers' data"})
	}
	if own, peer := m.TrustScore(), m.PeerTrustScore(); own != peer {
		f.Warnings = append(f.Warnings, Problem{Severity: SeverityWarning, Field: "privacy.training_consent",
			Message: fmt.Sprintf("a peer running the Python package scores this agent %d, not %d: its model has no training_consent field (PROTOCOL §2)", peer, own)})
	}
	return f
}
