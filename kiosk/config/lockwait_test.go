package config

import (
	"strings"
	"testing"
	"time"
)

func TestJournalLockWait(t *testing.T) {
	c, err := Parse([]byte(example(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Journal.LockWait.D() != 10*time.Second {
		t.Fatalf("default journal.lock_wait = %v, want 10s", c.Journal.LockWait.D())
	}
	for _, d := range []time.Duration{-time.Second, time.Hour} {
		c := c
		c.Journal.LockWait = Duration(d)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"journal.lock_wait"`) {
			t.Errorf("lock_wait %v: err = %v", d, err)
		}
	}
}
