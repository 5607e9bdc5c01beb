package reputation

import (
	"bytes"
	"slices"
)

// This file is the model of PROTOCOL.md section 10 across the mesh: a
// subject's score is a fold of its events in (time, id) order, starting at
// NeutralScore, clamping to [0, 10] after each event. Each event's raw
// delta is
//
//   - zeroed if it is a gain the subject reports about itself,
//   - scaled by the reporter's weight (its standing: 100% at standard or
//     above, 50% at unknown, 0% when untrusted),
//   - limited by what is left of the reporter's budget for the subject in
//     the event's window (gains GainCap, losses LossCap per window),
//
// and only then added. Everything the fold reads is in the events (times,
// ids, reporters) or in the mesh parameters (window, caps), so every node
// holding the same events computes the same score.
//
// A reporter's standing is its raw score — the same fold with every weight
// at 100% — as of the start of the event's window. Raw scores depend on no
// weight, so weights never depend on each other.

// evKey orders events: by time, then by id.
type evKey struct {
	at int64 // Unix microseconds
	id [32]byte
}

func (k evKey) less(o evKey) bool {
	if k.at != o.at {
		return k.at < o.at
	}
	return bytes.Compare(k.id[:], o.id[:]) < 0
}

func (k evKey) cmp(o evKey) int {
	switch {
	case k.at < o.at:
		return -1
	case k.at > o.at:
		return 1
	}
	return bytes.Compare(k.id[:], o.id[:])
}

// rec is a retained event as the node keeps it in memory: what the fold
// needs. Its signed form, details and display fields are on disk.
type rec struct {
	key      evKey
	reporter string // interned
	delta    Points // raw delta
	effect   Points // what it did to the score, set by the fold
	rawAfter Points // the subject's raw score after it, set by the fold
	pos, neg uint32 // outcomes counted positive and negative
	seq      uint64 // its key in bucket ev
}

// cell is one reporter's budget for one subject in the open window.
type cell struct {
	Reporter string `json:"reporter"`
	GainW    Points `json:"gain"`
	LossW    Points `json:"loss"`
	GainR    Points `json:"raw_gain"`
	LossR    Points `json:"raw_loss"`
	N        int32  `json:"events"`
}

// foldState is a subject's state after folding events up to Through.
type foldState struct {
	Through  evKey
	Score    Points
	Raw      Points
	Total    int64
	Positive int64
	Negative int64
	Last     int64  // time of the last event, Unix µs
	Win      int64  // window of the open cells
	WinRaw   Points // raw score at the start of Win
	Cells    []cell // budgets used in Win
}

func neutralState() foldState {
	return foldState{Score: NeutralScore, Raw: NeutralScore, WinRaw: NeutralScore, Win: -1}
}

func (st *foldState) clone() foldState {
	c := *st
	c.Cells = slices.Clone(st.Cells)
	return c
}

// params are the mesh parameters of the fold; every node of a mesh must use
// the same.
type params struct {
	window   int64  // µs
	gainCap  Points // > 0
	lossCap  Points // < 0
	standing func(reporter string, win int64) Points
}

// weight is the share of a reporter's reports that counts, in percent.
func weight(standing Points) int64 {
	switch {
	case standing >= BandStandard:
		return 100
	case standing >= BandUnknown:
		return 50
	default:
		return 0
	}
}

// scale returns d × pct / 100 rounded half away from zero.
func scale(d Points, pct int64) Points {
	v := int64(d) * pct
	if v >= 0 {
		return Points((v + 50) / 100)
	}
	return Points((v - 50) / 100)
}

// capped limits d to what is left of a budget and spends it.
func capped(d Points, gain, loss *Points, gainCap, lossCap Points) Points {
	switch {
	case d > 0:
		d = min(d, max(0, gainCap-*gain))
		*gain += d
	case d < 0:
		d = max(d, min(0, lossCap-*loss))
		*loss += d
	}
	return d
}

func (st *foldState) cell(reporter string) *cell {
	for i := range st.Cells {
		if st.Cells[i].Reporter == reporter {
			return &st.Cells[i]
		}
	}
	st.Cells = append(st.Cells, cell{Reporter: reporter})
	return &st.Cells[len(st.Cells)-1]
}

// step folds one event about subject into st and records its effect and
// the raw score after it in e.
func (st *foldState) step(subject string, e *rec, p *params) {
	w := e.key.at / p.window
	if w != st.Win {
		st.Win, st.WinRaw, st.Cells = w, st.Raw, st.Cells[:0]
	}
	c := st.cell(e.reporter)
	d := e.delta
	if e.reporter == subject && d > 0 {
		d = 0 // a node never raises its own agent
	}
	st.Raw = clamp(st.Raw + capped(d, &c.GainR, &c.LossR, p.gainCap, p.lossCap))
	var standing Points
	if e.reporter == subject {
		standing = st.WinRaw
	} else {
		standing = p.standing(e.reporter, w)
	}
	eff := capped(scale(d, weight(standing)), &c.GainW, &c.LossW, p.gainCap, p.lossCap)
	st.Score = clamp(st.Score + eff)
	c.N++
	e.effect, e.rawAfter = eff, st.Raw
	st.Total += int64(max(1, e.pos+e.neg))
	st.Positive += int64(e.pos)
	st.Negative += int64(e.neg)
	st.Last = max(st.Last, e.key.at)
	st.Through = e.key
}

// standingAt returns the raw score of an agent at the start of window win,
// from its checkpoint and retained events (sorted). Before the checkpoint's
// window the exact value is gone; the checkpoint's is used.
func standingAt(cp *foldState, events []rec, win, window int64) Points {
	start := win * window
	i, _ := slices.BinarySearchFunc(events, start, func(e rec, t int64) int {
		switch {
		case e.key.at < t:
			return -1
		case e.key.at > t:
			return 1
		}
		return 1 // events at t belong to win: search before them
	})
	if i > 0 {
		return events[i-1].rawAfter
	}
	if cp.Win < win {
		return cp.Raw
	}
	return cp.WinRaw
}
