package uplink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kioskd/kioskd/kiosk/failpoint"
	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/sync/wire"
)

// Cash collection records go to the ledger like top-ups (sync/CONTRACT.md §5.6): from the
// journal's collection outbox, on up/collection at QoS 1, the same payload bytes on every
// retry with the top-ups' backoff, until a signed down/collection_ack says stored or
// duplicate (conflict stops the resending and is alarmed). The collection_id is the
// ledger's idempotency key. A kiosk makes a collection a week or so: the outbox is re-read
// from the journal at every pass that found one waiting, and on Kick.

type collState struct {
	entry
	c journal.Collection
}

// drainCollections publishes the collection records that are due; it returns when to look
// again (a minute when none waits).
func (u *Uplink) drainCollections(ctx context.Context, connected bool) time.Duration {
	next := time.Minute
	if u.cfg.Journal == nil {
		return next
	}
	u.mu.Lock()
	reload := u.collDirty || len(u.colls) > 0 || !u.collLoaded
	u.collDirty = false
	u.mu.Unlock()
	var box []journal.Collection
	if reload {
		var err error
		if box, err = u.cfg.Journal.CollectionOutbox(); err != nil {
			u.log.Error("reading the collection outbox", "err", err)
			return 5 * time.Second
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if reload {
		u.collLoaded = true
		keep := map[string]*collState{}
		for _, c := range box {
			st := u.colls[c.ID]
			if st == nil {
				st = &collState{entry: entry{nextTry: u.cfg.Now()}}
			}
			st.c = c
			st.stopped = c.State == journal.CollectionConflict
			keep[c.ID] = st
		}
		for id, st := range u.colls {
			if st.inFlight && keep[id] == nil {
				keep[id] = st // its publish finishes first
			}
		}
		u.colls = keep
	}
	now := u.cfg.Now()
	for _, st := range u.colls {
		if st.stopped || st.inFlight || st.c.State == journal.CollectionStored {
			continue
		}
		if u.topupWaiting(st.c) {
			continue // the ack of that top-up wakes the drain again
		}
		if wait := st.nextTry.Sub(now); wait > 0 {
			next = min(next, wait)
			continue
		}
		if !connected {
			continue
		}
		st.inFlight = true
		u.tasks.Add(1)
		go u.publishCollection(ctx, st.c)
	}
	return next
}

func (u *Uplink) publishCollection(ctx context.Context, c journal.Collection) {
	defer u.tasks.Done()
	pctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	failpoint.Hit("before-publish-collection")
	err := u.cfg.Client.Publish(pctx, wire.Topic(u.cfg.KioskID, wire.UpCollection), 1, false, c.Payload)
	cancel()
	failpoint.Hit("after-publish-collection")
	u.mu.Lock()
	if st := u.colls[c.ID]; st != nil {
		st.inFlight = false
		st.attempts++
		st.nextTry = u.cfg.Now().Add(u.Backoff(st.attempts))
	}
	u.mu.Unlock()
	if err != nil {
		u.log.Info("collection publish failed; will retry", "collection", c.ID, "err", err)
	} else {
		u.log.Info("collection record published", "collection", c.ID)
	}
	u.wakeup()
}

// handleCollectionAck verifies and applies a down/collection_ack.
func (u *Uplink) handleCollectionAck(_ string, payload []byte) {
	var a wire.CollectionAck
	kid, err := u.cfg.LedgerKeys.Open(payload, &a)
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		u.rejectAck(fmt.Sprintf("collection ack refused (kid %q): %v", kid, err))
		return
	}
	c, changed, err := u.cfg.Journal.ApplyCollectionAck(a)
	if errors.Is(err, journal.ErrNoCollection) {
		u.rejectAck(fmt.Sprintf("ack for a collection this kiosk does not hold: %s", a.CollectionID))
		return
	}
	if err != nil {
		u.log.Error("applying collection ack", "collection", a.CollectionID, "err", err)
		return
	}
	u.mu.Lock()
	if st := u.colls[c.ID]; st != nil {
		st.c = c
		st.stopped = c.State == journal.CollectionConflict
	}
	u.collDirty = true
	u.mu.Unlock()
	if changed {
		u.log.Info("collection ack applied", "collection", a.CollectionID, "status", a.Status, "ledger_ref", a.LedgerRef)
		if a.Status == wire.CollectionConflict {
			u.cfg.Health.Event("collection_conflict", health.Critical, health.Engineer,
				fmt.Sprintf("ledger holds collection %s with different content; resending stopped", a.CollectionID))
		}
	}
	u.wakeup()
}

// topupWaiting reports whether a top-up that one of c's uncertain items belongs to is still in
// the outbox: the ledger links the item to the suspense record that top-up creates, so the
// record goes after it. u.mu is held.
func (u *Uplink) topupWaiting(c journal.Collection) bool {
	for _, it := range c.Uncertain {
		if it.TopupID == "" {
			continue
		}
		_, _, seq, err := wire.ParseTopupID(it.TopupID)
		if err != nil {
			continue
		}
		if t, ok := u.box[seq]; ok && t.State != journal.TopupConflict {
			return true
		}
	}
	return false
}
