package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrRefused is the error of a peer that may not use the control socket.
var ErrRefused = errors.New("permission refused")

// Policy decides who may use the control socket.
type Policy struct {
	// SelfUID is kioskd's own user.
	SelfUID uint32
	// Group is the group's name (for messages) and GID its id; GID < 0 when the group does
	// not exist on this machine, then only root and SelfUID are served.
	Group string
	GID   int64
	// Groups lists the groups of a user (primary and supplementary); nil reads the system's
	// user database.
	Groups func(uid uint32) ([]string, error)
}

// Check reports whether the peer cred may use the socket: nil, or an error wrapping
// ErrRefused that says why.
func (p Policy) Check(cred unix.Ucred) error {
	if cred.Uid == 0 || cred.Uid == p.SelfUID {
		return nil
	}
	if p.GID >= 0 {
		if int64(cred.Gid) == p.GID {
			return nil
		}
		groups := p.Groups
		if groups == nil {
			groups = userGroups
		}
		ids, err := groups(cred.Uid)
		if err == nil && slices.Contains(ids, strconv.FormatInt(p.GID, 10)) {
			return nil
		}
	}
	return fmt.Errorf("%w: uid %d is not root, not kioskd's user and not in group %q (add the user to the group, or use sudo)", ErrRefused, cred.Uid, p.Group)
}

func userGroups(uid uint32) ([]string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, err
	}
	return u.GroupIds()
}

// peerCred reads the credentials of the process at the other end of a UNIX connection.
func peerCred(c net.Conn) (unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return unix.Ucred{}, fmt.Errorf("not a unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return unix.Ucred{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return unix.Ucred{}, err
	}
	if serr != nil {
		return unix.Ucred{}, serr
	}
	return *cred, nil
}

type verdictKey struct{}

// connVerdict is stored in each connection's context by the server's ConnContext.
type connVerdict struct {
	cred unix.Ucred
	err  error
}

func withVerdict(ctx context.Context, p Policy, c net.Conn) context.Context {
	cred, err := peerCred(c)
	if err == nil {
		err = p.Check(cred)
	} else {
		err = fmt.Errorf("%w: peer credentials unreadable: %v", ErrRefused, err)
	}
	return context.WithValue(ctx, verdictKey{}, connVerdict{cred: cred, err: err})
}
