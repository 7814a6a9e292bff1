package svcmenu

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Role is a technician role. Each role can do what the roles below it can.
type Role string

// Roles, lowest first.
const (
	Collector  Role = "collector"  // empties the cassette, reads counters
	Technician Role = "technician" // services the devices: self-tests, maintenance, sign-offs
	Admin      Role = "admin"      // also sets the roles' PINs
)

// Roles lists the roles, lowest first.
var Roles = []Role{Collector, Technician, Admin}

func (r Role) rank() int { return slices.Index(Roles, r) }

// AtLeast reports whether r may do what min may.
func (r Role) AtLeast(min Role) bool { return r.rank() >= 0 && r.rank() >= min.rank() }

// ParseRole maps a name to a role.
func ParseRole(s string) (Role, bool) {
	r := Role(strings.TrimSpace(s))
	return r, r.rank() >= 0
}

// MaxSlots is how many PINs a role can have: slot 1 is stored under the role's name
// ("technician"), slots 2.. under "technician_2" and so on, so every technician of a team can
// have a PIN of their own and the journal says which one acted.
const MaxSlots = 9

// SlotKey is the credentials key of a role's PIN slot.
func SlotKey(r Role, slot int) string {
	if slot <= 1 {
		return string(r)
	}
	return string(r) + "_" + strconv.Itoa(slot)
}

// Credentials is the current map of credential keys (SlotKey) to PIN hashes. The journal's
// credentials (set by a remote set_credentials command, or locally by an admin) meet here.
type Credentials interface {
	// PINHashes returns the hashes in force, by SlotKey; keys that are no role's are ignored.
	PINHashes() (map[string]string, error)
	// SetPINHash stores one slot's hash, on record with who set it.
	SetPINHash(key, hash, who string) error
}

// Errors of a login.
var (
	ErrWrongPIN  = errors.New("wrong PIN")
	ErrLockedOut = errors.New("too many wrong PINs: locked")
	ErrNoEntry   = errors.New("the service menu opens with the cabinet door open")
)

// Lockout: after FreeTries wrong PINs in a row, each further wrong PIN locks logins for
// BaseLock, doubling with every one up to MaxLock. A right PIN resets the count.
const (
	FreeTries = 3
	BaseLock  = 30 * time.Second
	MaxLock   = time.Hour
	// IdleLogout ends a login the screen has not been touched for.
	IdleLogout = 3 * time.Minute
)

// Login is one logged-in technician.
type Login struct {
	Role Role
	Slot int
	// Token is the login's secret, held by the page.
	Token string
	Since time.Time
	last  time.Time
}

// Who names the login in the journal: role and PIN slot ("technician/1").
func (l Login) Who() string { return fmt.Sprintf("%s/%d", l.Role, l.Slot) }

// auth holds the lockout state and the one login of the kiosk's screen.
type auth struct {
	creds Credentials
	now   func() time.Time
	log   *slog.Logger
	// audit journals a login-related event (a lockout, a login, a logout).
	audit func(who, action, detail, result string)

	mu sync.Mutex
	// verifying serializes PIN checks: argon2id takes memory, and two at once would only
	// help someone guessing.
	verifying   sync.Mutex
	failsInRow  int
	failsTotal  uint64
	lockedUntil time.Time
	login       *Login
}

// LockState says whether logins are locked now and how many wrong PINs were counted.
type LockState struct {
	Locked      bool
	Until       time.Time
	FailsInRow  int
	FailsTotal  uint64
	RetryInSecs int
}

func (a *auth) lockState() LockState {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	s := LockState{FailsInRow: a.failsInRow, FailsTotal: a.failsTotal}
	if now.Before(a.lockedUntil) {
		s.Locked, s.Until = true, a.lockedUntil
		s.RetryInSecs = int(a.lockedUntil.Sub(now).Round(time.Second) / time.Second)
		if s.RetryInSecs < 1 {
			s.RetryInSecs = 1
		}
	}
	return s
}

// lockFor is the lockout after n wrong PINs in a row.
func lockFor(n int) time.Duration {
	if n < FreeTries {
		return 0
	}
	d := BaseLock
	for i := FreeTries; i < n && d < MaxLock; i++ {
		d *= 2
	}
	return min(d, MaxLock)
}

// tryLogin checks pin against role's slots. A wrong PIN is counted; the lockout starts after
// FreeTries of them and is journaled once per lockout (not once per PIN).
func (a *auth) tryLogin(role Role, pin string) (*Login, error) {
	if st := a.lockState(); st.Locked {
		return nil, fmt.Errorf("%w for %d s", ErrLockedOut, st.RetryInSecs)
	}
	a.verifying.Lock()
	slot, err := a.match(role, pin)
	a.verifying.Unlock()
	a.mu.Lock()
	if err != nil {
		a.mu.Unlock()
		return nil, err
	}
	now := a.now()
	if slot == 0 {
		a.failsInRow++
		a.failsTotal++
		n := a.failsInRow
		d := lockFor(n)
		if d > 0 {
			a.lockedUntil = now.Add(d)
		}
		a.mu.Unlock()
		if d > 0 {
			a.log.Warn("service menu locked after wrong PINs", "in_row", n, "for", d)
			a.audit("screen", "login_locked", fmt.Sprintf("%d wrong PINs in a row; locked for %s", n, d), "locked")
			return nil, fmt.Errorf("%w for %d s", ErrLockedOut, int(d/time.Second))
		}
		return nil, ErrWrongPIN
	}
	fails := a.failsInRow
	a.failsInRow, a.lockedUntil = 0, time.Time{}
	var b [24]byte
	_, _ = rand.Read(b[:])
	l := &Login{Role: role, Slot: slot, Token: hex.EncodeToString(b[:]), Since: now, last: now}
	prev := a.login
	a.login = l
	a.mu.Unlock()
	if prev != nil {
		a.audit(prev.Who(), "logout", "another login", "ok")
	}
	detail := ""
	if fails > 0 {
		detail = fmt.Sprintf("after %d wrong PINs", fails)
	}
	a.audit(l.Who(), "login", detail, "ok")
	return l, nil
}

// match returns the slot whose hash pin matches (0: none).
func (a *auth) match(role Role, pin string) (int, error) {
	if !ValidPIN(pin) {
		return 0, nil // counted as a wrong PIN; never hashed
	}
	hashes, err := a.creds.PINHashes()
	if err != nil {
		return 0, fmt.Errorf("credentials unreadable: %w", err)
	}
	for slot := 1; slot <= MaxSlots; slot++ {
		h, ok := hashes[SlotKey(role, slot)]
		if !ok || h == "" {
			continue
		}
		okPIN, err := VerifyPIN(h, pin)
		if err != nil {
			a.log.Error("a PIN hash in force cannot be used", "slot", SlotKey(role, slot), "err", err)
			continue
		}
		if okPIN {
			return slot, nil
		}
	}
	return 0, nil
}

// current returns the login that token names, ending it when it has been idle IdleLogout;
// touch counts the request as activity.
func (a *auth) current(token string, touch bool) (*Login, bool) {
	a.mu.Lock()
	l := a.login
	if l == nil || token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(l.Token)) != 1 {
		a.mu.Unlock()
		return nil, false
	}
	now := a.now()
	if now.Sub(l.last) >= IdleLogout {
		a.login = nil
		a.mu.Unlock()
		a.audit(l.Who(), "logout", "idle for "+IdleLogout.String(), "ok")
		return nil, false
	}
	if touch {
		l.last = now
	}
	c := *l
	a.mu.Unlock()
	return &c, true
}

// expireIdle ends the login when it has been idle IdleLogout (also without a request, so the
// journal says when it ended).
func (a *auth) expireIdle() {
	a.mu.Lock()
	l := a.login
	if l == nil || a.now().Sub(l.last) < IdleLogout {
		a.mu.Unlock()
		return
	}
	a.login = nil
	a.mu.Unlock()
	a.audit(l.Who(), "logout", "idle for "+IdleLogout.String(), "ok")
}

// logout ends the login token names.
func (a *auth) logout(token string) {
	a.mu.Lock()
	l := a.login
	if l == nil || subtle.ConstantTimeCompare([]byte(token), []byte(l.Token)) != 1 {
		a.mu.Unlock()
		return
	}
	a.login = nil
	a.mu.Unlock()
	a.audit(l.Who(), "logout", "", "ok")
}
