package simrig

import (
	"errors"
	"sort"
)

// CassetteCount is what a collector counts in one cassette: the emulator's own record of the
// notes that went into it, per denomination (the ground truth the kiosk's journal is
// compared against at cash collection).
type CassetteCount struct {
	Cassette   int            `json:"cassette"`
	Notes      []CassetteLine `json:"notes"`
	TotalMinor int64          `json:"total_minor"`
	Count      int            `json:"count"`
}

// CassetteLine is one denomination of a count.
type CassetteLine struct {
	ValueMinor int64 `json:"value_minor"`
	Count      int64 `json:"count"`
}

// CountCassette counts cassette number n (0: the newest cassette that holds or held notes,
// which after a pull is the one in the collector's hands).
func (r *Rig) CountCassette(n int) CassetteCount {
	stacked := r.Acc.Stacked()
	if n == 0 {
		for _, s := range stacked {
			n = max(n, s.Cassette)
		}
	}
	by := map[int64]int64{}
	out := CassetteCount{Cassette: n, Notes: []CassetteLine{}}
	for _, s := range stacked {
		if s.Cassette != n {
			continue
		}
		by[s.ValueMinor]++
		out.TotalMinor += s.ValueMinor
		out.Count++
	}
	values := make([]int64, 0, len(by))
	for v := range by {
		values = append(values, v)
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	for _, v := range values {
		out.Notes = append(out.Notes, CassetteLine{ValueMinor: v, Count: by[v]})
	}
	return out
}

// JamNextStack arms a stacker jam for the next note the acceptor stacks, past its point of no
// return and before its credit (ID-003 and CCNET emulators): the fault that makes a note an
// uncertain item, which the cash collection's count then shows.
func (r *Rig) JamNextStack() error {
	if a, ok := r.Acc.(interface{ rawSim() any }); ok {
		if j, ok := a.rawSim().(interface{ JamOnStack() }); ok {
			j.JamOnStack()
			return nil
		}
	}
	return errors.New("simrig: this acceptor cannot jam on the next stack")
}
