package loadtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kioskd/kioskd/kiosk/journal"
)

// sent is a top-up as the kiosk journaled it.
type sent struct {
	id, account string
	amount      int64
}

// row is a top-up as the ledger stored it.
type row struct {
	id, account, status string
	amount              int64
}

// account is an account's totals in the ledger.
type account struct {
	name    string
	count   int64
	balance int64
}

// tally compares what the kiosks sent with what the ledger holds. lost: sent and not in the
// ledger, or not credited there; doubled: credited more than once (an account counting more
// credits or more money than its top-ups, a row no kiosk sent, or the ledger instances
// reporting more first credits than there are top-ups); wrong: stored with another amount or
// account.
type tallyResult struct {
	Sent, Rows, Lost, Doubled, Wrong int
	Notes                            []string
}

func tally(sentList []sent, rows []row, accounts []account, firstCredits uint64) tallyResult {
	r := tallyResult{Sent: len(sentList), Rows: len(rows)}
	note := func(format string, args ...any) {
		if len(r.Notes) < 10 {
			r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
		}
	}
	byID := make(map[string]row, len(rows))
	for _, rw := range rows {
		if _, dup := byID[rw.id]; dup {
			r.Doubled++
			note("the ledger stores %s twice", rw.id)
		}
		byID[rw.id] = rw
	}
	wantCount := map[string]int64{}
	wantSum := map[string]int64{}
	ids := make(map[string]bool, len(sentList))
	for _, s := range sentList {
		ids[s.id] = true
		wantCount[s.account]++
		wantSum[s.account] += s.amount
		rw, ok := byID[s.id]
		switch {
		case !ok:
			r.Lost++
			note("lost: %s is not in the ledger", s.id)
		case rw.status != "credited":
			r.Lost++
			note("lost: %s is %s in the ledger, not credited", s.id, rw.status)
		case rw.amount != s.amount || rw.account != s.account:
			r.Wrong++
			note("%s: ledger %d to %s, kiosk %d to %s", s.id, rw.amount, rw.account, s.amount, s.account)
		}
	}
	for _, rw := range rows {
		if !ids[rw.id] {
			r.Doubled++
			note("the ledger holds %s, which no kiosk sent", rw.id)
		}
	}
	seen := map[string]bool{}
	for _, a := range accounts {
		seen[a.name] = true
		if a.count > wantCount[a.name] || a.balance > wantSum[a.name] {
			r.Doubled++
			note("account %s: %d credits, %d minor; its top-ups: %d, %d", a.name, a.count, a.balance, wantCount[a.name], wantSum[a.name])
		} else if a.count < wantCount[a.name] || a.balance < wantSum[a.name] {
			r.Lost++
			note("account %s: %d credits, %d minor; its top-ups: %d, %d", a.name, a.count, a.balance, wantCount[a.name], wantSum[a.name])
		}
	}
	for name := range wantCount {
		if !seen[name] {
			r.Lost++
			note("account %s: not in the ledger", name)
		}
	}
	if firstCredits > uint64(len(sentList)) {
		r.Doubled += int(firstCredits - uint64(len(sentList)))
		note("the ledger instances answered %q %d times for %d top-ups", "credited", firstCredits, len(sentList))
	}
	return r
}

// journaled lists every top-up the kiosks closed, and counts those still in an outbox or not
// credited by their ack.
func journaled(ks []*kiosk) (out []sent, unacked int, err error) {
	for _, k := range ks {
		for seq := uint64(1); seq <= uint64(k.closed); seq++ {
			t, ok, err := k.j.Topup(seq)
			if err != nil || !ok {
				return nil, 0, fmt.Errorf("%s: top-up %d: found=%v %v", k.id, seq, ok, err)
			}
			out = append(out, sent{id: t.TopupID, account: t.Account, amount: t.AmountMinor})
			if t.State != journal.TopupCredited {
				unacked++
			}
		}
	}
	return out, unacked, nil
}

// ledgerRows reads the ledger's tables directly: its Store interface answers one top-up or
// one account at a time.
func ledgerRows(ctx context.Context, dsn string) ([]row, []account, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var rows []row
	// Credited top-ups are in topups, held ones in held: a top-up in both would be doubled.
	rs, err := conn.Query(ctx, `SELECT topup_id, account, amount_minor, 'credited' FROM topups
		UNION ALL SELECT topup_id, account, amount_minor, 'held' FROM held`)
	if err != nil {
		return nil, nil, err
	}
	for rs.Next() {
		var rw row
		if err := rs.Scan(&rw.id, &rw.account, &rw.amount, &rw.status); err != nil {
			return nil, nil, err
		}
		rows = append(rows, rw)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	var accts []account
	rs, err = conn.Query(ctx, `SELECT a.account, a.topup_count, COALESCE(b.balance_minor, 0)
		FROM accounts a LEFT JOIN balances b ON b.account = a.account AND b.currency = $1`, currency)
	if err != nil {
		return nil, nil, err
	}
	for rs.Next() {
		var a account
		if err := rs.Scan(&a.name, &a.count, &a.balance); err != nil {
			return nil, nil, err
		}
		accts = append(accts, a)
	}
	return rows, accts, rs.Err()
}

func TestTally(t *testing.T) {
	s := []sent{{"K-1", "a", 100}, {"K-2", "a", 500}, {"K-3", "b", 1000}}
	good := []row{{"K-1", "a", "credited", 100}, {"K-2", "a", "credited", 500}, {"K-3", "b", "credited", 1000}}
	accts := []account{{"a", 2, 600}, {"b", 1, 1000}}
	if r := tally(s, good, accts, 3); r.Lost != 0 || r.Doubled != 0 || r.Wrong != 0 {
		t.Fatalf("exact ledger: %+v", r)
	}
	if r := tally(s, good[:2], []account{{"a", 2, 600}}, 2); r.Lost != 2 || r.Doubled != 0 {
		t.Errorf("a missing top-up (and its account): %+v", r)
	}
	if r := tally(s, good, []account{{"a", 3, 1100}, {"b", 1, 1000}}, 3); r.Doubled != 1 || r.Lost != 0 {
		t.Errorf("an account credited twice: %+v", r)
	}
	if r := tally(s, good, accts, 4); r.Doubled != 1 {
		t.Errorf("four first credits for three top-ups: %+v", r)
	}
	extra := append(append([]row(nil), good...), row{"K-9", "b", "credited", 100})
	if r := tally(s, extra, accts, 3); r.Doubled != 1 {
		t.Errorf("a row no kiosk sent: %+v", r)
	}
	held := append([]row{{"K-1", "a", "held", 100}}, good[1:]...)
	if r := tally(s, held, []account{{"a", 1, 500}, {"b", 1, 1000}}, 2); r.Lost != 2 {
		t.Errorf("a held top-up (and the account short of it): %+v", r)
	}
	if r := tally(s, []row{{"K-1", "a", "credited", 200}, good[1], good[2]}, accts, 3); r.Wrong != 1 {
		t.Errorf("another amount: %+v", r)
	}
}
