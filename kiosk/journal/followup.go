package journal

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/kioskd/kioskd/sync/wire"
	bolt "go.etcd.io/bbolt"
)

// A credit reported after its session closed.
//
// A session closes with a note in transit when the unit could not say in time what became of
// it (its link was down longer than the engine waits, or the journal refused the credit and
// the unit is still repeating it): the note becomes an uncertain item of the session and its
// top-up carries it as suspense. When the unit then reports the credit of that note, the
// report explains the item. Recording it as an unexpected credit would make one physical
// note two uncertain items that belong to no top-up; instead CreditAfterClose resolves the
// item and credits the note to the same customer as a follow-up top-up of the original one
// (wire.Topup.FollowsTopupID), which the ledger credits against the suspense record.

// FollowUp is the outcome of CreditAfterClose that credited the note by a follow-up top-up.
const FollowUp ReReport = Unexpected + 1

// LateCredit is what CreditAfterClose concluded and committed.
type LateCredit struct {
	// Kind is Repeat (the unit repeated the last journaled credit: acknowledge, count
	// nothing), Unexpected (nothing explains the report: it was recorded as an uncertain item,
	// as CreditWithoutIntent does) or FollowUp.
	Kind ReReport
	// The rest is set for FollowUp only.
	// Topup is the follow-up top-up (in the outbox, its receipt to print).
	Topup *Topup
	// Follows is the top-up of the closed session whose uncertain item the note was.
	Follows Topup
	// Resolved is the uncertain item, as resolved.
	Resolved Uncertain
	// Credit is the note credited.
	Credit Note
}

// CreditAfterClose handles a credit report when no stack intent is open, in one
// transaction. A repeat of the last unfinished credit is Repeat, as in CreditWithoutIntent.
// Otherwise, when the report is the credit of the note of the most recent stack intent,
// which had no credit when its session closed and became that session's uncertain item, it
// resolves the item: the note is counted in the cassette (an item of a note in transit was
// never counted there) and credited by a follow-up top-up to the same account, with the same
// wallet code, follows_topup_id the session's top-up, its own top-up seq, outbox entry and
// receipt number. Anything else is Unexpected, recorded as CreditWithoutIntent does.
func (j *Journal) CreditAfterClose(reported Note, detail string) (LateCredit, error) {
	var res LateCredit
	err := j.update(func(w *writer) error {
		res = LateCredit{}
		var lc lastCredit
		found, err := getJSON(w.tx, bMeta, kLastCredit, &lc)
		if err != nil {
			return err
		}
		if !found || !lc.repeatedBy(reported) {
			m, ok, err := w.lateItem(reported, false)
			if err != nil {
				return err
			}
			if ok {
				res, err = w.followUp(m, reported, detail)
				return err
			}
		}
		res.Kind, err = w.creditWithoutIntent(reported, detail)
		return err
	})
	if err == nil && res.Kind == Unexpected {
		err = j.seal("unexpected credit recorded")
	}
	return res, err
}

// lateMatch is the uncertain item a late credit report explains.
type lateMatch struct {
	item    Uncertain
	intent  IntentResolvedEvent
	session Session
	orig    Topup
}

// lateItem finds the uncertain item a credit report with no open intent explains: the
// newest item, unsettled, made of the stack intent of a session that closed with it (the
// event just before the item resolved that intent as uncertain), of the reported value (or
// the report names none), with no stack intent, credit or other uncertain item after it.
// Only then can the unit be reporting that note: it handles one note at a time, and a newer
// intent means it went on to another. Anything less certain is not a match. With
// noNewSession, a session opened after the item also rules it out: a note of that session
// whose stack intent a power cut took leaves no other trace, and a unit's power-up report
// (unlike a credit report that the unit's link held back) cannot tell the two notes apart.
func (w *writer) lateItem(reported Note, noNewSession bool) (lateMatch, bool, error) {
	var m lateMatch
	k, v := w.tx.Bucket(bUncertain).Cursor().Last()
	if k == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(v, &m.item); err != nil {
		return m, false, fmt.Errorf("%w: uncertain %d: %v", ErrCorrupt, btoi(k), err)
	}
	u := m.item
	if u.Settled || u.SessionID == 0 || u.ValueMinor <= 0 || u.ID < 2 ||
		(reported.ValueMinor != 0 && reported.ValueMinor != u.ValueMinor) {
		return m, false, nil
	}
	rec, err := decodeRecord(u.ID-1, w.tx.Bucket(bEvents).Get(u64(u.ID-1)))
	if err != nil || rec.Type != EvIntentResolved {
		return m, false, nil
	}
	if err := json.Unmarshal(rec.Data, &m.intent); err != nil {
		return m, false, fmt.Errorf("%w: event %d: %v", ErrCorrupt, rec.Seq, err)
	}
	if m.intent.Resolution != ResolvedUncertain || m.intent.SessionID != u.SessionID || m.intent.Note.ValueMinor != u.ValueMinor {
		return m, false, nil
	}
	// Nothing after the item may say the unit moved on to another note.
	c := w.tx.Bucket(bEvents).Cursor()
	for ek, ev := c.Seek(u64(u.ID + 1)); ek != nil; ek, ev = c.Next() {
		r, err := decodeRecord(btoi(ek), ev)
		if err != nil {
			return m, false, err
		}
		switch r.Type {
		case EvStackIntent, EvNoteCredited, EvCreditedDirect, EvPulse, EvUnexpectedCredit, EvUncertain, EvFollowUpCredit, EvNoteRefused:
			return m, false, nil
		case EvSessionOpened:
			if noNewSession {
				return m, false, nil
			}
		}
	}
	found, err := getJSON(w.tx, bSessions, u64(u.SessionID), &m.session)
	if err != nil || !found {
		return m, false, err
	}
	s := m.session
	if !s.Closed || s.TopupSeq == 0 || !slices.ContainsFunc(s.Uncertain, func(x Uncertain) bool { return x.ID == u.ID }) {
		return m, false, nil
	}
	found, err = getJSON(w.tx, bTopups, u64(s.TopupSeq), &m.orig)
	if err != nil || !found {
		return m, false, err
	}
	return m, true, nil
}

// followUp resolves m's item by a follow-up top-up of credit, in w's transaction.
func (w *writer) followUp(m lateMatch, reported Note, detail string) (LateCredit, error) {
	j, s := w.j, m.session
	credit := reported
	if credit.ValueMinor == 0 {
		credit = m.intent.Note
	}
	tseq, err := w.tx.Bucket(bTopups).NextSequence()
	if err != nil {
		return LateCredit{}, err
	}
	rno, err := w.tx.Bucket(bReceipts).NextSequence()
	if err != nil {
		return LateCredit{}, err
	}
	now := j.now().UTC()
	// The session's account and wallet code, and its opening time: the ledger checks the
	// code against when the customer presented it, not when the note's report came.
	wt := wire.Topup{V: wire.Version, TopupID: wire.TopupID(j.kioskID, j.epoch, tseq), KioskID: j.kioskID, Seq: tseq,
		Account: s.Account, Currency: s.Currency, AmountMinor: credit.ValueMinor,
		Notes:    []wire.NoteLine{{ValueMinor: credit.ValueMinor, Count: 1}},
		OpenedAt: s.OpenedAt, ClosedAt: now, ReceiptNo: rno, Outcome: wire.OutcomeComplete, Uncertain: []wire.Uncertain{},
		QR: s.QR, FollowsTopupID: m.orig.TopupID}
	if err := wt.Validate(); err != nil {
		return LateCredit{}, fmt.Errorf("journal: follow-up: built an invalid top-up: %w", err)
	}
	payload, err := json.Marshal(wt)
	if err != nil {
		return LateCredit{}, err
	}
	t := &Topup{Seq: tseq, TopupID: wt.TopupID, SessionID: s.ID, ReceiptNo: rno, Account: s.Account,
		AccountMask: s.AccountMasked, AmountMinor: credit.ValueMinor, Currency: s.Currency, Outcome: wt.Outcome,
		Payload: payload, State: TopupPending, ClosedAt: now}
	if _, err := w.append(FollowUpCreditEvent{AmountMinor: credit.ValueMinor, Detail: detail, FollowsTopupSeq: m.orig.Seq,
		IntentID: m.intent.IntentID, Note: credit, Payload: payload, ReceiptNo: rno, SessionID: s.ID,
		TopupID: wt.TopupID, TopupSeq: tseq, UncertainID: m.item.ID}); err != nil {
		return LateCredit{}, err
	}
	if err := w.put(bTopups, u64(tseq), t); err != nil {
		return LateCredit{}, err
	}
	if err := w.tx.Bucket(bOutbox).Put(u64(tseq), []byte(TopupPending)); err != nil {
		return LateCredit{}, err
	}
	if err := w.put(bReceipts, u64(rno), receiptRec{No: rno, TopupSeq: tseq}); err != nil {
		return LateCredit{}, err
	}
	// An item of a note in transit at close was never counted in the cassette: the one
	// physical note is counted now, once.
	if err := w.addCassette(credit.ValueMinor); err != nil {
		return LateCredit{}, err
	}
	u := m.item
	u.Settled, u.ResolvedBy = true, wt.TopupID
	if err := w.put(bUncertain, u64(u.ID), u); err != nil {
		return LateCredit{}, err
	}
	if err := w.adjustBaseline(u.ID); err != nil {
		return LateCredit{}, err
	}
	// The unit may repeat this report (its ACK lost): it is the last credit now.
	if err := w.put(bMeta, kLastCredit, lastCredit{IntentID: m.intent.IntentID, SessionID: s.ID, Note: credit}); err != nil {
		return LateCredit{}, err
	}
	return LateCredit{Kind: FollowUp, Topup: t, Follows: m.orig, Resolved: u, Credit: credit}, nil
}

// adjustBaseline keeps the unit's counter baseline right when the item id it took into
// account is credited now. If the counter had already seen the note go in (the baseline
// counted it among the items it saw), the cassette count the baseline pairs it with must
// count the note too; if not, it is no longer one the counter may yet see.
func (w *writer) adjustBaseline(id uint64) error {
	var b DeviceBaseline
	found, err := getJSON(w.tx, bMeta, kDeviceCounter, &b)
	if err != nil || !found || id > b.UncertainThrough {
		return err
	}
	// Unsettled items the baseline took into account, this one included.
	var open int64
	c := w.tx.Bucket(bUncertain).Cursor()
	for k, v := c.First(); k != nil && btoi(k) <= b.UncertainThrough; k, v = c.Next() {
		var u Uncertain
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("%w: uncertain %d: %v", ErrCorrupt, btoi(k), err)
		}
		if (!u.Settled || btoi(k) == id) && !inCassette(w.tx, u) {
			open++
		}
	}
	if open > b.Pending {
		b.Cassette++
	} else if b.Pending > 0 {
		b.Pending--
	}
	//lint:ignore S1016 the event is the on-disk schema: a conversion would silently follow a change of the view type
	if _, err := w.append(DeviceCounterEvent{Device: b.Device, Cassette: b.Cassette, Unit: b.Unit, UncertainThrough: b.UncertainThrough, Pending: b.Pending}); err != nil {
		return err
	}
	return w.put(bMeta, kDeviceCounter, b)
}

// UncertainItem returns an uncertain item by id, settled or not.
func (j *Journal) UncertainItem(id uint64) (Uncertain, bool, error) {
	var u Uncertain
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx, bUncertain, u64(id), &u)
		return err
	})
	return u, ok, err
}

// FollowsReceipt returns the receipt number of the top-up that follow-up t follows, 0 when t
// is no follow-up (or that top-up is not in this journal).
func (j *Journal) FollowsReceipt(t Topup) (uint64, error) {
	w, err := t.Wire()
	if err != nil || w.FollowsTopupID == "" {
		return 0, err
	}
	_, epoch, seq, err := wire.ParseTopupID(w.FollowsTopupID)
	if err != nil || epoch != j.epoch {
		return 0, err
	}
	orig, ok, err := j.Topup(seq)
	if err != nil || !ok || orig.TopupID != w.FollowsTopupID {
		return 0, err
	}
	return orig.ReceiptNo, nil
}

// followUp replays a FollowUpCreditEvent: a new top-up of a closed session's note, counted
// in the cassette, resolving one of that session's uncertain items once.
func (r *replay) followUp(e *FollowUpCreditEvent) error {
	s := r.sessions[e.SessionID]
	if s == nil || !s.Closed || s.TopupSeq == 0 || s.TopupSeq != e.FollowsTopupSeq {
		return fmt.Errorf("follow-up of session %d that has no top-up %d", e.SessionID, e.FollowsTopupSeq)
	}
	i := slices.IndexFunc(s.Uncertain, func(u Uncertain) bool { return u.ID == e.UncertainID })
	if i < 0 || s.Uncertain[i].Settled {
		return fmt.Errorf("follow-up resolves uncertain item %d that session %d does not hold open", e.UncertainID, s.ID)
	}
	if _, dup := r.topups[e.TopupSeq]; dup || e.TopupSeq != r.nTopups+1 {
		return fmt.Errorf("top-up seq %d out of order", e.TopupSeq)
	}
	origTopup, ok := r.topups[e.FollowsTopupSeq]
	if !ok {
		return fmt.Errorf("follow-up of top-up %d whose payload the replay does not hold", e.FollowsTopupSeq)
	}
	var wt, orig wire.Topup
	if err := json.Unmarshal(e.Payload, &wt); err != nil {
		return fmt.Errorf("follow-up payload: %v", err)
	}
	if err := json.Unmarshal(origTopup.payload, &orig); err != nil {
		return fmt.Errorf("top-up %d payload: %v", e.FollowsTopupSeq, err)
	}
	if e.Note.ValueMinor <= 0 || e.AmountMinor != e.Note.ValueMinor || wt.AmountMinor != e.AmountMinor ||
		wt.FollowsTopupID != orig.TopupID || wt.Account != orig.Account || wt.TopupID != e.TopupID || wt.Seq != e.TopupSeq {
		return fmt.Errorf("follow-up top-up %d does not match its event", e.TopupSeq)
	}
	// The replay's copy of the item marks it resolved, so that a second resolution fails.
	s.Uncertain[i].Settled = true
	r.topups[e.TopupSeq] = replayTopup{amount: e.AmountMinor, payload: e.Payload, session: s.ID}
	r.nTopups++
	r.outbox[e.TopupSeq] = TopupPending
	r.addCassette(e.Note.ValueMinor)
	return nil
}
