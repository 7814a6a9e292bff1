package ledger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kioskd/kioskd/sync/wire"
)

// Cash collections (sync/CONTRACT.md §5.6). A kiosk sends one record per collection of its
// cassette: what its journal expected per denomination, what the collector counted, the
// differences and the period's uncertain items. The ledger stores it once per
// collection_id (a redelivery is a duplicate, other content a conflict) and credits nothing:
// the record is evidence. Each uncertain item of the record is linked to its suspense
// record (the one the item's top-up created), or gets one when it has none (a note outside
// any session reached the ledger only in this record). Operations then settle each suspense
// record, naming the collection as evidence (DecideSuspense with Decision.CollectionID):
// release credits the customer, reject closes it.

// CollectionRecord is a cash collection as the ledger keeps it.
type CollectionRecord struct {
	CollectionID string          `json:"collection_id"`
	LedgerRef    string          `json:"ledger_ref"`
	KioskID      string          `json:"kiosk_id"`
	ContentHash  string          `json:"content_hash"`
	StoredAt     time.Time       `json:"stored_at"`
	Conflicts    int             `json:"conflicts,omitempty"`
	Collection   wire.Collection `json:"collection"`
}

// CollectionView is a record with the suspense records of its uncertain items, as the ops
// API shows it.
type CollectionView struct {
	CollectionRecord
	Items []SuspenseRecord `json:"items"`
}

// CollectionStore is the part of a Store that keeps cash collections; BoltStore and PGStore
// implement it.
type CollectionStore interface {
	// PutCollection stores c once (c must pass c.Validate) and links its uncertain items to
	// suspense records, in one transaction. The status is wire.CollectionStored, Duplicate
	// or Conflict.
	PutCollection(c wire.Collection) (status, ledgerRef string, err error)
	// Collection returns one record with its items' suspense records; ErrNotFound if none.
	Collection(id string) (CollectionView, error)
	// Collections returns the records of one kiosk (all kiosks for ""), oldest first.
	Collections(kioskID string) ([]CollectionRecord, error)
}

// checkSuspenseDecision applies what a decision adds for a suspense record: the collection
// named as evidence must list the record, and a release needs an account and a value (the
// decision supplies them for a record that has none: an item outside any session, or of
// unknown value). It returns the account and value a release credits.
func checkSuspenseDecision(r SuspenseRecord, d Decision) (account string, value int64, err error) {
	if d.CollectionID != "" && r.CollectionID != d.CollectionID {
		return "", 0, fmt.Errorf("%w: suspense %s is not an item of collection %s", ErrDecision, r.Ref, d.CollectionID)
	}
	if d.Action != ActionRelease {
		return "", 0, nil
	}
	account, value = r.Account, r.ValueMinor
	if account == "" {
		account = d.Account
	} else if d.Account != "" && d.Account != account {
		return "", 0, fmt.Errorf("%w: suspense %s belongs to a top-up of another account", ErrDecision, r.Ref)
	}
	if value == 0 {
		value = d.ValueMinor
	} else if d.ValueMinor != 0 && d.ValueMinor != value {
		return "", 0, fmt.Errorf("%w: suspense %s has value %d", ErrDecision, r.Ref, value)
	}
	if !wire.ValidAccount(account) || value <= 0 || value > 1e12 {
		return "", 0, fmt.Errorf("%w: a release of %s needs the customer's account and the note's value", ErrDecision, r.Ref)
	}
	return account, value, nil
}

var bCollections = []byte("collections")

// PutCollection implements CollectionStore.
func (s *BoltStore) PutCollection(c wire.Collection) (status, ref string, err error) {
	if err := c.Validate(); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	hash := c.ContentHash()
	err = s.db.Update(func(tx *bolt.Tx) error {
		cb, err := tx.CreateBucketIfNotExists(bCollections)
		if err != nil {
			return err
		}
		var rec CollectionRecord
		found, err := getJSON(cb, []byte(c.CollectionID), &rec)
		if err != nil {
			return err
		}
		if found {
			status, ref = wire.CollectionDuplicate, rec.LedgerRef
			if rec.ContentHash != hash {
				status = wire.CollectionConflict
				rec.Conflicts++
				return putJSON(cb, []byte(c.CollectionID), rec)
			}
			return nil
		}
		n, err := cb.NextSequence()
		if err != nil {
			return err
		}
		now := s.now().UTC()
		rec = CollectionRecord{CollectionID: c.CollectionID, LedgerRef: fmt.Sprintf("CO%012d", n), KioskID: c.KioskID,
			ContentHash: hash, StoredAt: now, Collection: c}
		if err := linkItemsBolt(tx, c, now); err != nil {
			return err
		}
		status, ref = wire.CollectionStored, rec.LedgerRef
		return putJSON(cb, []byte(c.CollectionID), rec)
	})
	if err != nil {
		return "", "", fmt.Errorf("ledger: collection %s: %w", c.CollectionID, err)
	}
	return status, ref, nil
}

// itemMatches tells whether suspense record r stands for item it of collection c: the same
// top-up, value and reason, not yet linked to a collection.
func itemMatches(r SuspenseRecord, c wire.Collection, it wire.CollectionItem) bool {
	return r.CollectionID == "" && r.KioskID == c.KioskID && it.TopupID != "" && r.TopupID == it.TopupID &&
		r.ValueMinor == it.ValueMinor && r.Reason == it.Reason
}

func linkItemsBolt(tx *bolt.Tx, c wire.Collection, now time.Time) error {
	sb := tx.Bucket(bSuspense)
	for _, it := range c.Uncertain {
		var key []byte
		var rec SuspenseRecord
		if it.TopupID != "" {
			cur := sb.Cursor()
			for k, v := cur.First(); k != nil; k, v = cur.Next() {
				var r SuspenseRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				if itemMatches(r, c, it) {
					key, rec = slices.Clone(k), r
					break
				}
			}
		}
		if key == nil {
			sn, err := sb.NextSequence()
			if err != nil {
				return err
			}
			key = u64(sn)
			rec = SuspenseRecord{Ref: fmt.Sprintf("SU%012d", sn), TopupID: it.TopupID, KioskID: c.KioskID, Currency: c.Currency,
				ValueMinor: it.ValueMinor, Reason: it.Reason, At: now}
			if it.TopupID != "" {
				var t TopupRecord
				if ok, err := getJSON(tx.Bucket(bTopups), []byte(it.TopupID), &t); err != nil {
					return err
				} else if ok {
					rec.Account = t.Account
				}
			}
		}
		rec.CollectionID = c.CollectionID
		if err := putJSON(sb, key, rec); err != nil {
			return err
		}
	}
	return nil
}

// Collection implements CollectionStore.
func (s *BoltStore) Collection(id string) (CollectionView, error) {
	var v CollectionView
	err := s.db.View(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bCollections)
		if cb == nil {
			return ErrNotFound
		}
		ok, err := getJSON(cb, []byte(id), &v.CollectionRecord)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		v.Items = []SuspenseRecord{}
		return tx.Bucket(bSuspense).ForEach(func(_, b []byte) error {
			var r SuspenseRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			if r.CollectionID == id {
				v.Items = append(v.Items, r)
			}
			return nil
		})
	})
	if err != nil {
		return CollectionView{}, fmt.Errorf("ledger: collection %s: %w", id, err)
	}
	return v, nil
}

// Collections implements CollectionStore.
func (s *BoltStore) Collections(kioskID string) ([]CollectionRecord, error) {
	out := []CollectionRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bCollections)
		if cb == nil {
			return nil
		}
		return cb.ForEach(func(_, b []byte) error {
			var r CollectionRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			if kioskID == "" || r.KioskID == kioskID {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: collections: %w", err)
	}
	slices.SortFunc(out, func(a, b CollectionRecord) int {
		switch {
		case a.LedgerRef < b.LedgerRef:
			return -1
		case a.LedgerRef > b.LedgerRef:
			return 1
		}
		return 0
	})
	return out, nil
}

var _ CollectionStore = (*BoltStore)(nil)

// handleCollection stores an up/collection record and answers it with a signed
// down/collection_ack. A store error is not answered: the kiosk sends again.
func (l *Ledger) handleCollection(topic string, payload []byte) {
	var c wire.Collection
	kiosk, ok := l.parse(topic, payload, wire.UpCollection, &c)
	if !ok {
		return
	}
	if err := c.Validate(); err != nil {
		l.stats.Rejected.Add(1)
		l.log.Warn("ledger: collection refused", "topic", topic, "collection_id", c.CollectionID, "err", err)
		return
	}
	if c.KioskID != kiosk {
		l.stats.Rejected.Add(1)
		l.log.Warn("ledger: security: collection of another kiosk", "topic", topic, "kiosk_id", c.KioskID)
		return
	}
	cs, ok := l.store.(CollectionStore)
	if !ok {
		l.log.Error("ledger: this store keeps no cash collections", "collection_id", c.CollectionID)
		return
	}
	status, ref, err := cs.PutCollection(c)
	if err != nil {
		l.log.Error("ledger: storing collection", "collection_id", c.CollectionID, "err", err)
		return
	}
	switch status {
	case wire.CollectionStored:
		l.log.Info("ledger: cash collection stored", "collection_id", c.CollectionID, "ledger_ref", ref,
			"expected_minor", c.ExpectedMinor, "counted_minor", c.CountedMinor, "difference_minor", c.DifferenceMinor,
			"uncertain", len(c.Uncertain))
	case wire.CollectionConflict:
		l.log.Warn("ledger: collection redelivered with other content", "collection_id", c.CollectionID, "ledger_ref", ref)
	}
	l.publishSigned(kiosk, wire.DownCollectionAck, wire.CollectionAck{V: wire.Version, CollectionID: c.CollectionID, Status: status, LedgerRef: ref})
}

// collectionRoutes adds the collections' part of the ops API (see Handler).
func (l *Ledger) collectionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/collections", func(w http.ResponseWriter, r *http.Request) {
		cs, ok := l.store.(CollectionStore)
		if !ok {
			writeError(w, http.StatusNotImplemented, "this store keeps no cash collections")
			return
		}
		kiosk := r.URL.Query().Get("kiosk")
		if kiosk != "" && !wire.ValidKioskID(kiosk) {
			writeError(w, http.StatusBadRequest, "malformed kiosk id")
			return
		}
		recs, err := cs.Collections(kiosk)
		l.writeResult(w, recs, err)
	})
	mux.HandleFunc("GET /api/collections/{id}", func(w http.ResponseWriter, r *http.Request) {
		cs, ok := l.store.(CollectionStore)
		if !ok {
			writeError(w, http.StatusNotImplemented, "this store keeps no cash collections")
			return
		}
		id := r.PathValue("id")
		if _, _, _, err := wire.ParseCollectionID(id); err != nil {
			writeError(w, http.StatusBadRequest, "malformed collection_id")
			return
		}
		v, err := cs.Collection(id)
		l.writeResult(w, v, err)
	})
}
