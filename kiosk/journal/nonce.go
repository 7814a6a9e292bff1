package journal

import (
	"fmt"
	"time"
)

// UseNonce records a QR nonce as used until expires; a nonce seen before is ErrNonceUsed.
// Expired nonces are pruned on the way (a QR code past its expiry is refused anyway).
func (j *Journal) UseNonce(nonce string, expires time.Time) error {
	if nonce == "" {
		return fmt.Errorf("journal: empty nonce")
	}
	return j.update(func(w *writer) error {
		b := w.tx.Bucket(bNonces)
		if b.Get([]byte(nonce)) != nil {
			return ErrNonceUsed
		}
		now := j.now().Unix()
		c := b.Cursor()
		pruned := 0
		for k, v := c.First(); k != nil && pruned < 64; k, v = c.Next() {
			if int64(btoi(v)) < now-86400 {
				if err := c.Delete(); err != nil {
					return err
				}
				pruned++
			}
		}
		return b.Put([]byte(nonce), u64(uint64(expires.Unix())))
	})
}
