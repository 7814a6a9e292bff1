package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kioskd/kioskd/sync/ledger/pgtest"
	"github.com/kioskd/kioskd/sync/wire"
)

// TestSuspenseFollowUpVersusDecision: a note of an uncertain item is credited once, whether a
// follow-up top-up from the kiosk or an operator's release (through the HTTP API) gets there
// first, and in whichever order they commit. The same table runs against every store.
func TestSuspenseFollowUpVersusDecision(t *testing.T) {
	forEachStore(t, testSuspenseFollowUpVersusDecision)
}

const opsToken = "olga-token-0123456789"

// suspenseOriginal is a top-up of 5000 for bob whose last note (10000) stayed uncertain, and
// the follow-up the kiosk sends when the unit reports that note's credit.
func suspenseOriginal(seq uint64) (orig, fu wire.Topup) {
	orig = topup("K1", 1, seq, "bob", 5000)
	orig.Outcome = wire.OutcomeInterrupted
	orig.Uncertain = []wire.Uncertain{{ValueMinor: 10000, Reason: "still in transit at session close"}}
	fu = topup("K1", 1, seq+1, "bob", 10000)
	fu.FollowsTopupID = orig.TopupID
	return orig, fu
}

// decide posts an operator's decision on a suspense record and returns the HTTP status and body.
func decide(t *testing.T, h http.Handler, ref, action string) (int, string) {
	t.Helper()
	return decidePath(t, h, "/api/suspense/"+ref+"/"+action)
}

func decidePath(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"operator": "olga", "note": "cassette count"})
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+opsToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func balance(t *testing.T, s Store, account string) int64 {
	t.Helper()
	a, err := s.Account(account)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balances["CNY"]
}

func testSuspenseFollowUpVersusDecision(t *testing.T, open openFunc) {
	cases := []struct {
		name string
		run  func(t *testing.T, s Store, h http.Handler)
	}{
		{"follow-up then release", func(t *testing.T, s Store, h http.Handler) {
			orig, fu := suspenseOriginal(1)
			mustApply(t, s, orig, wire.AckCredited)
			ref := openRef(t, s, orig.TopupID)
			mustApply(t, s, fu, wire.AckCredited)
			for _, action := range []string{ActionRelease, ActionReject} {
				code, body := decide(t, h, ref, action)
				if code != http.StatusConflict || !strings.Contains(body, "resolved by follow-up "+fu.TopupID) {
					t.Errorf("%s of a resolved record: %d %s, want 409 naming the follow-up", action, code, body)
				}
			}
			if _, err := s.DecideSuspense(ref, Decision{Action: ActionRelease, Operator: "olga"}); !errors.Is(err, ErrDecided) {
				t.Errorf("store release of a resolved record: %v, want ErrDecided", err)
			}
			if got := balance(t, s, "bob"); got != 15000 {
				t.Errorf("balance %d, want 15000 (the note once)", got)
			}
			if ref := openRefOrEmpty(t, s, orig.TopupID); ref != "" {
				t.Errorf("record %s still listed as open after the follow-up", ref)
			}
		}},
		{"release then follow-up", func(t *testing.T, s Store, h http.Handler) {
			orig, fu := suspenseOriginal(1)
			mustApply(t, s, orig, wire.AckCredited)
			ref := openRef(t, s, orig.TopupID)
			if code, body := decide(t, h, ref, ActionRelease); code != http.StatusOK {
				t.Fatalf("release: %d %s", code, body)
			}
			// Held, with the reason: the kiosk forgets it, and it is never credited; a
			// redelivery is answered the same.
			for range 2 {
				if r := mustApply(t, s, fu, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
					t.Errorf("follow-up after the release held for %q", r.Reason)
				}
			}
			if got := balance(t, s, "bob"); got != 15000 {
				t.Errorf("balance %d, want 15000 (the note once)", got)
			}
			if code, _ := decide(t, h, ref, ActionRelease); code != http.StatusConflict {
				t.Errorf("second release: %d, want 409", code)
			}
			// Nor can operations credit the note again by releasing the held follow-up.
			code, body := decidePath(t, h, "/api/held/"+fu.TopupID+"/release")
			if code != http.StatusConflict || !strings.Contains(body, "no open suspense records") {
				t.Errorf("release of the held follow-up: %d %s, want 409", code, body)
			}
			if got := balance(t, s, "bob"); got != 15000 {
				t.Errorf("balance %d, want 15000 (the note once)", got)
			}
		}},
		{"follow-up before its original, released from held", func(t *testing.T, s Store, h http.Handler) {
			orig, fu := suspenseOriginal(1)
			// Several top-ups are in flight at once: the follow-up may arrive first. Nothing
			// backs it yet, so it is held.
			if r := mustApply(t, s, fu, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
				t.Errorf("follow-up before its original held for %q", r.Reason)
			}
			code, body := decidePath(t, h, "/api/held/"+fu.TopupID+"/release")
			if code != http.StatusConflict {
				t.Errorf("release of the follow-up before its original: %d %s, want 409", code, body)
			}
			mustApply(t, s, orig, wire.AckCredited)
			ref := openRef(t, s, orig.TopupID)
			// Now the original's record backs it: the release credits it and resolves the
			// record, which operations then cannot release as well.
			if code, body := decidePath(t, h, "/api/held/"+fu.TopupID+"/release"); code != http.StatusOK {
				t.Fatalf("release of the held follow-up: %d %s", code, body)
			}
			if code, body := decide(t, h, ref, ActionRelease); code != http.StatusConflict || !strings.Contains(body, "resolved by follow-up") {
				t.Errorf("release of the resolved record: %d %s, want 409", code, body)
			}
			if got := balance(t, s, "bob"); got != 15000 {
				t.Errorf("balance %d, want 15000 (the note once)", got)
			}
		}},
		{"reject then follow-up", func(t *testing.T, s Store, h http.Handler) {
			orig, fu := suspenseOriginal(1)
			mustApply(t, s, orig, wire.AckCredited)
			ref := openRef(t, s, orig.TopupID)
			if code, body := decide(t, h, ref, ActionReject); code != http.StatusOK {
				t.Fatalf("reject: %d %s", code, body)
			}
			// Settled by operations: the kiosk's late word goes to operations as a held top-up.
			if r := mustApply(t, s, fu, wire.AckHeld); r.Reason != HoldFollowUpUnmatched {
				t.Errorf("follow-up after the rejection held for %q", r.Reason)
			}
			if got := balance(t, s, "bob"); got != 5000 {
				t.Errorf("balance %d, want 5000", got)
			}
		}},
		{"concurrent release and follow-up", func(t *testing.T, s Store, _ http.Handler) {
			const rounds = 12
			var released, followed int
			for i := range uint64(rounds) {
				orig, fu := suspenseOriginal(2*i + 1)
				mustApply(t, s, orig, wire.AckCredited)
				ref := openRef(t, s, orig.TopupID)
				before := balance(t, s, "bob")
				var (
					wg     sync.WaitGroup
					start  = make(chan struct{})
					res    Result
					resErr error
					decErr error
				)
				wg.Go(func() {
					<-start
					res, resErr = s.ApplyTopup(fu)
				})
				wg.Go(func() {
					<-start
					_, decErr = s.DecideSuspense(ref, Decision{Action: ActionRelease, Operator: "olga"})
				})
				close(start)
				wg.Wait()
				if resErr != nil {
					t.Fatalf("round %d: follow-up: %v", i, resErr)
				}
				switch {
				case res.Status == wire.AckCredited && errors.Is(decErr, ErrDecided):
					followed++
				case res.Status == wire.AckHeld && res.Reason == HoldFollowUpUnmatched && decErr == nil:
					released++
				default:
					t.Fatalf("round %d: follow-up %s %q, release %v: want exactly one to credit", i, res.Status, res.Reason, decErr)
				}
				if got := balance(t, s, "bob") - before; got != 10000 {
					t.Fatalf("round %d: credited %d for the note, want it once (10000)", i, got)
				}
			}
			t.Logf("%d rounds: follow-up first %d, release first %d", rounds, followed, released)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: t0}
			s := open(clk.Now)
			l, err := New(Config{Store: s, Signer: testSigner, WalletKeys: testWallet, Now: clk.Now,
				Operators: map[string]string{"olga": opsToken}})
			if err != nil {
				t.Fatal(err)
			}
			tc.run(t, s, l.Handler())
		})
	}
}

// openRefOrEmpty returns the ref of the open suspense record of a top-up, "" when none is open.
func openRefOrEmpty(t *testing.T, s Store, topupID string) string {
	t.Helper()
	sus, err := s.Suspense()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sus {
		if r.TopupID == topupID && r.Status == "" && r.ResolvedBy == "" {
			return r.Ref
		}
	}
	return ""
}

func openRef(t *testing.T, s Store, topupID string) string {
	t.Helper()
	ref := openRefOrEmpty(t, s, topupID)
	if ref == "" {
		t.Fatalf("no open suspense record for %s", topupID)
	}
	return ref
}

// TestPGMigrationResolvesEarlierFollowUps: a database written before migration 0003 holds
// follow-ups whose original's records were left open. The migration resolves them, and
// raises an alarm for a follow-up whose record an operator had already released.
func TestPGMigrationResolvesEarlierFollowUps(t *testing.T) {
	dsn := pgtest.Shared(t).NewDSN(t)
	s := openPG(t, dsn, nil)
	orig1, fu1 := suspenseOriginal(1)
	mustApply(t, s, orig1, wire.AckCredited)
	ref1 := openRef(t, s, orig1.TopupID)
	mustApply(t, s, fu1, wire.AckCredited)
	orig2, fu2 := suspenseOriginal(3)
	mustApply(t, s, orig2, wire.AckCredited)
	ref2 := openRef(t, s, orig2.TopupID)
	if _, err := s.DecideSuspense(ref2, Decision{Action: ActionRelease, Operator: "olga"}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, fu2, wire.AckHeld)
	// Back to what the old schema and code left: fu2 credited as well, nothing resolved.
	err := s.write(func(ctx context.Context, tx pgxTx) error {
		_, err := tx.Exec(ctx, `INSERT INTO topups (topup_id, ledger_seq, ledger_ref, content_hash, kiosk_id, epoch, seq,
			account, currency, amount_minor, outcome, receipt_no, credited_at, payload)
			SELECT topup_id, nextval('ledger_ref_seq'), 'LR-old', content_hash, kiosk_id, epoch, seq, account, currency,
			amount_minor, payload->>'outcome', (payload->>'receipt_no')::BIGINT, held_at, payload FROM held WHERE topup_id = $1`,
			fu2.TopupID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM held WHERE topup_id = $1`, fu2.TopupID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DROP INDEX suspense_open_by_topup;
			ALTER TABLE suspense DROP COLUMN resolved_by, DROP COLUMN resolved_at;
			DELETE FROM schema_migrations WHERE version = 3`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openPG(t, dsn, nil)
	if ref := openRefOrEmpty(t, s, orig1.TopupID); ref != "" {
		t.Errorf("record %s of %s still open after the migration", ref, orig1.TopupID)
	}
	if _, err := s.DecideSuspense(ref1, Decision{Action: ActionRelease, Operator: "olga"}); !errors.Is(err, ErrDecided) {
		t.Errorf("release of the record fu1 resolved: %v, want ErrDecided", err)
	}
	alarms, err := s.Alarms()
	if err != nil {
		t.Fatal(err)
	}
	var unbacked []OpsAlarm
	for _, a := range alarms {
		if a.Kind == AlarmFollowUpUnbacked {
			unbacked = append(unbacked, a)
		}
	}
	if len(unbacked) != 1 || unbacked[0].TopupID != fu2.TopupID || !strings.Contains(unbacked[0].Details, orig2.TopupID) {
		t.Errorf("alarms %+v, want one %s for %s", unbacked, AlarmFollowUpUnbacked, fu2.TopupID)
	}
}
