package playbacktest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// tb records the failure Check reports instead of failing the test.
type tb struct {
	testing.TB
	failed string
}

func (t *tb) Helper() {}
func (t *tb) Fatalf(format string, args ...any) {
	if t.failed == "" { // a real Fatalf stops at the first
		t.failed = fmt.Sprintf(format, args...)
	}
}

func TestScriptPlayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ran := false
		f, host := New(t,
			Ask([]byte{1, 2}, []byte{0xA1}),
			Silent([]byte{3}),
			Step{Host: []byte{4}, Unit: [][]byte{{0xB1}, {0xB2}}, Pause: time.Second, Then: func() { ran = true }},
		)
		buf := make([]byte, 4)
		host.Write([]byte{1, 2})
		if n, _ := host.Read(buf); n != 1 || buf[0] != 0xA1 {
			t.Fatalf("answer % X", buf[:n])
		}
		host.Write([]byte{3})
		start := time.Now()
		host.Write([]byte{4})
		io.ReadFull(host, buf[:1])
		io.ReadFull(host, buf[1:2])
		if time.Since(start) != time.Second || buf[0] != 0xB1 || buf[1] != 0xB2 {
			t.Fatalf("answer % X after %v", buf[:2], time.Since(start))
		}
		host.Close()
		f.Check()
		if !ran || f.Played() != 3 {
			t.Fatalf("Then ran %v, played %d", ran, f.Played())
		}
	})
}

func TestWrongByteFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &tb{TB: t}
		f, host := New(rec, Ask([]byte{1, 2, 3}, []byte{9}))
		host.Write([]byte{1, 7, 3})
		// The fake closed the port at the wrong byte: the host's next read fails at once.
		if _, err := host.Read(make([]byte, 1)); err == nil {
			t.Fatal("port still open after a wrong byte")
		}
		host.Close()
		f.Check()
		if !strings.Contains(rec.failed, "host sent 01 07 03, want 01 02 03") {
			t.Fatalf("failure %q", rec.failed)
		}
	})
}

func TestBytesAfterTheScriptFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &tb{TB: t}
		f, host := New(rec, Silent([]byte{1}))
		host.Write([]byte{1})
		host.Write([]byte{2, 3})
		host.Close()
		f.Check()
		if !strings.Contains(rec.failed, "after the script: host sent 02 03") {
			t.Fatalf("failure %q", rec.failed)
		}
	})
}

func TestUnplayedStepsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &tb{TB: t}
		f, host := New(rec, Silent([]byte{1}), Silent([]byte{2}))
		host.Write([]byte{1})
		host.Close()
		f.Check()
		if !strings.Contains(rec.failed, "step 1") {
			t.Fatalf("failure %q", rec.failed)
		}
	})
}

func TestReadFrame(t *testing.T) {
	lengthPrefixed := func(b []byte) (bool, error) {
		if b[0] != 0xFC {
			return false, errors.New("no sync")
		}
		return len(b) >= 2 && len(b) == int(b[1]), nil
	}
	r := strings.NewReader("\xFC\x03a\xFC\x02")
	got, err := ReadFrame(r, lengthPrefixed)
	if err != nil || string(got) != "\xFC\x03a" {
		t.Fatalf("% X %v", got, err)
	}
	if got, err := ReadFrame(r, lengthPrefixed); err != nil || string(got) != "\xFC\x02" {
		t.Fatalf("% X %v", got, err)
	}
	if _, err := ReadFrame(strings.NewReader("x"), lengthPrefixed); err == nil {
		t.Fatal("no error for bytes that cannot be a frame")
	}
}
