package reputation

import (
	"context"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

// FuzzImport checks that Import never panics, never lets the store exceed
// its bound, never raises a score or lifts an unknown agent above 5.00, and
// on error leaves the store exactly as it was.
func FuzzImport(f *testing.F) {
	f.Add([]byte(pythonExport))
	f.Add([]byte(`{"reputation_data":{"good":{"score":1},"n1":{"score":4.5},"n2":{"score":0}}}`))
	f.Add([]byte(`{"reputation_data":{"ok":{"score":1},"a":` + validEntry + `}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newTestStore(t, Config{MaxAgents: 6, MaxImportAgents: 8})
		ctx := context.Background()
		record(t, s, "good", TypeSuccess, "")
		record(t, s, "bad", TypeHallucination, SeverityCritical)
		record(t, s, "meh", TypeFailure, "")
		before := map[string]Points{}
		for _, id := range ids(s) {
			before[id], _ = s.Score(id)
		}
		beforeJSON := exportJSON(t, s)

		n, err := s.Import(ctx, "peer", data)
		if err != nil {
			if n != 0 || exportJSON(t, s) != beforeJSON {
				t.Fatalf("failed import (%v) changed the store", err)
			}
			return
		}
		changed := 0
		for _, id := range ids(s) {
			p, _ := s.Score(id)
			old, known := before[id]
			if !known {
				old = NeutralScore
			}
			if p > old {
				t.Fatalf("import raised %q from %s to %s", id, old, p)
			}
			if p < old {
				changed++
			}
		}
		if changed != n {
			t.Fatalf("Import reported %d agents updated, %d changed", n, changed)
		}
		checkInvariants(t, s)
	})
}

// FuzzParsePoints checks ParsePoints against exact rational arithmetic and
// checks that every value it returns survives a JSON round trip.
func FuzzParsePoints(f *testing.F) {
	for _, s := range []string{"6", "5.9999999999999964", "4.675", "-0.125", "1e-3", "6.0e+0", "1e17", "01", "-", "9999999999999999.995"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePoints(s)
		if err != nil {
			return
		}
		if back, err := ParsePoints(string(p.AppendJSON(nil))); err != nil || back != p {
			t.Fatalf("ParsePoints(%q) = %d; its JSON %s reads back as %d, %v", s, p, p.AppendJSON(nil), back, err)
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("ParsePoints accepted %q, which is not JSON", s)
		}
		// Exact reference, for inputs whose exponent keeps big.Rat cheap.
		if i := strings.IndexAny(s, "eE"); i >= 0 && len(s)-i > 3 {
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat cannot read %q", s)
		}
		r.Mul(r, big.NewRat(100, 1))
		num := new(big.Int).Abs(r.Num())
		q, rem := new(big.Int).QuoRem(num, r.Denom(), new(big.Int))
		if rem.Lsh(rem, 1).Cmp(r.Denom()) >= 0 {
			q.Add(q, big.NewInt(1))
		}
		if r.Sign() < 0 {
			q.Neg(q)
		}
		if !q.IsInt64() || q.Int64() != int64(p) {
			t.Fatalf("ParsePoints(%q) = %d, exact rounding gives %s", s, p, q)
		}
	})
}

// FuzzEventJSON checks that Event decoding never panics and that every event
// it accepts encodes and decodes back to itself.
func FuzzEventJSON(f *testing.F) {
	f.Add([]byte(pythonEvent))
	f.Add([]byte(`{"event_id":"e","event_type":"x","timestamp":"2026-01-25 10:00:00+01:00","score_delta":-2,"details":{"a":[1,{"b":null}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("cannot encode decoded event %+v: %v", ev, err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("cannot decode own encoding %s: %v", b, err)
		}
		b2, _ := json.Marshal(back)
		if string(b2) != string(b) || !back.Time.Equal(ev.Time) || back.Delta != ev.Delta {
			t.Fatalf("round trip differs:\n%s\n%s", b, b2)
		}
	})
}
