package ledger

import (
	"fmt"
	"slices"

	"github.com/kioskd/kioskd/sync/wire"
)

// Suspense resolution by a follow-up top-up (sync/CONTRACT.md §8.7). Both stores keep the same
// rules, with this one matching function:
//   - a follow-up is credited only if every one of its notes finds an open suspense record
//     (neither released, rejected nor resolved) of the top-up it follows, by value first,
//     then one of unknown value (0), in the order the records were made; otherwise it is
//     held (HoldFollowUpUnmatched), never credited;
//   - the credit resolves exactly those records in the same transaction (ResolvedBy), and a
//     release or reject of a resolved record is refused with ErrDecided;
//   - so an operator's release and a follow-up for the same note never both credit:
//     whichever commits first wins, and the other is refused (release: ErrDecided) or held
//     (follow-up: the kiosk gets a held ack and forgets the top-up);
//   - an operator's release of a held follow-up is refused as well unless open records still
//     back all its notes: releasing it would credit a note that a release or another
//     follow-up already credited (or that the original, not yet received, does not list).

// suspenseOpen reports whether r is still waiting to be settled.
func suspenseOpen(r SuspenseRecord) bool { return r.Status == "" && r.ResolvedBy == "" }

// matchFollowUp picks, for each note of follow-up t, one of the open records' values (given
// in record order): the same value first, else an unknown one (0). It returns the indexes
// into values it picked and whether every note found one.
func matchFollowUp(values []int64, t wire.Topup) ([]int, bool) {
	taken := make([]bool, len(values))
	var picked []int
	find := func(v int64) int {
		for i, x := range values {
			if !taken[i] && x == v {
				return i
			}
		}
		return -1
	}
	all := true
	for _, n := range t.Notes {
		for range n.Count {
			i := find(n.ValueMinor)
			if i < 0 {
				i = find(0)
			}
			if i < 0 {
				all = false
				continue
			}
			taken[i] = true
			picked = append(picked, i)
		}
	}
	slices.Sort(picked)
	return picked, all
}

// followUpSettled is the refusal of a release of held follow-up t whose notes are no longer
// (or not yet) backed by open suspense records.
func followUpSettled(t wire.Topup) error {
	return fmt.Errorf("%w: follow-up of %s: no open suspense records of that top-up back all its notes "+
		"(released, rejected or resolved already, or the top-up not received yet)", ErrDecided, t.FollowsTopupID)
}

// AlarmFollowUpUnbacked: PostgreSQL migration 0003 found a follow-up credited (before the
// migration) with no open suspense record left for one of its notes: an operator may have
// released the same note as well, and a person must check for a second credit.
const AlarmFollowUpUnbacked = "follow_up_unbacked"
