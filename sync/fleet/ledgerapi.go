package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/sync/wire"
)

// LedgerClient reads ledgerd's HTTP API (sync/ledger/http.go): GET /api/kiosks for the
// kiosk's journal epochs and watermarks, then GET /api/topups/{topup_id} for the newest
// seqs. The ledger has no per-kiosk listing; the topup_id is built from the epoch and seq,
// so a handful of GETs finds the recent top-ups without one.
type LedgerClient struct {
	// Base is ledgerd's URL, e.g. http://127.0.0.1:8081.
	Base   string
	Client *http.Client
}

// LedgerTopup is a top-up as the console shows it. The account is masked: the console is
// for operations, not for reading customers' accounts.
type LedgerTopup struct {
	TopupID     string    `json:"topup_id"`
	Seq         uint64    `json:"seq"`
	Account     string    `json:"account"`
	Currency    string    `json:"currency"`
	AmountMinor int64     `json:"amount_minor"`
	Outcome     string    `json:"outcome"`
	ReceiptNo   uint64    `json:"receipt_no"`
	CreditedAt  time.Time `json:"credited_at"`
	LedgerRef   string    `json:"ledger_ref"`
}

type ledgerEpoch struct {
	Epoch        string    `json:"epoch"`
	Watermark    uint64    `json:"watermark"`
	Above        []uint64  `json:"above"`
	LastCreditAt time.Time `json:"last_credit_at"`
}

type ledgerKiosk struct {
	KioskID string        `json:"kiosk_id"`
	Epochs  []ledgerEpoch `json:"epochs"`
}

func (c *LedgerClient) get(ctx context.Context, path string, v any) (int, error) {
	hc := c.Client
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Base, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ledger: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // drained for connection reuse only
		return resp.StatusCode, fmt.Errorf("ledger: GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("ledger: GET %s: %w", path, err)
	}
	return resp.StatusCode, nil
}

// RecentTopups returns up to n of the kiosk's newest top-ups the ledger holds, newest first.
func (c *LedgerClient) RecentTopups(ctx context.Context, kioskID string, n int) ([]LedgerTopup, error) {
	var ks []ledgerKiosk
	if _, err := c.get(ctx, "/api/kiosks", &ks); err != nil {
		return nil, err
	}
	var epochs []ledgerEpoch
	for _, k := range ks {
		if k.KioskID == kioskID {
			epochs = k.Epochs
		}
	}
	// The newest epoch is the one credited last.
	slices.SortFunc(epochs, func(a, b ledgerEpoch) int { return -a.LastCreditAt.Compare(b.LastCreditAt) })
	var out []LedgerTopup
	for _, e := range epochs {
		epoch, err := strconv.ParseUint(e.Epoch, 16, 64)
		if err != nil {
			return out, fmt.Errorf("ledger: epoch %q", e.Epoch)
		}
		seqs := slices.Clone(e.Above)
		for s := e.Watermark; s >= 1 && len(seqs) < n+len(e.Above); s-- {
			seqs = append(seqs, s)
		}
		slices.SortFunc(seqs, func(a, b uint64) int { return cmp.Compare(b, a) })
		for _, s := range seqs {
			if len(out) >= n {
				return out, nil
			}
			var t LedgerTopup
			code, err := c.get(ctx, "/api/topups/"+url.PathEscape(wire.TopupID(kioskID, epoch, s)), &t)
			if code == http.StatusNotFound {
				continue // held, not credited: not in the credited list
			}
			if err != nil {
				return out, err
			}
			t.Account = maskAccount(t.Account)
			out = append(out, t)
		}
	}
	return out, nil
}

func maskAccount(a string) string {
	if len(a) <= 4 {
		return "***"
	}
	return a[:2] + "***" + a[len(a)-2:]
}
