package broker

import (
	"crypto/subtle"
	"log/slog"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kioskd/kioskd/sync/wire"
)

// accessHook authenticates clients and applies the topic ACL (package documentation).
type accessHook struct {
	mqtt.HookBase
	users   map[string]string
	acl     bool
	ledgers map[string]bool
	log     *slog.Logger
}

func (h *accessHook) ID() string { return "kioskd-access" }

func (h *accessHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if h.users != nil {
		want, ok := h.users[user]
		// Compare in constant time even for an unknown user, so timing does not reveal
		// which usernames exist.
		if !ok {
			want = "\x00unknown"
		}
		if subtle.ConstantTimeCompare([]byte(want), pk.Connect.Password) != 1 || !ok {
			h.log.Warn("broker: authentication failed", "user", user, "remote", cl.Net.Remote)
			return false
		}
	}
	if h.acl && !h.ledgers[user] {
		// A kiosk's client id must be its username: otherwise it could connect with another
		// kiosk's client id and take over (disconnect) that kiosk's session.
		if !wire.ValidKioskID(user) || pk.Connect.ClientIdentifier != user {
			h.log.Warn("broker: client id must equal kiosk username", "user", user, "client", pk.Connect.ClientIdentifier)
			return false
		}
	}
	return true
}

// OnACLCheck is asked for every publish (write) and subscribe (read) by a client, and again
// (read) with the concrete topic for every message delivered to it.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !h.acl {
		return true
	}
	user := string(cl.Properties.Username)
	var allowed string
	switch {
	case h.ledgers[user] && write:
		allowed = "kiosk/+/down/#"
	case h.ledgers[user]:
		allowed = "kiosk/+/up/#"
	case !wire.ValidKioskID(user):
		return false
	case write:
		allowed = "kiosk/" + user + "/up/#"
	default:
		allowed = "kiosk/" + user + "/down/#"
	}
	ok := covers(allowed, topic)
	if !ok {
		h.log.Warn("broker: ACL denied", "user", user, "topic", topic, "write", write)
	}
	return ok
}

// covers reports whether every topic matched by filter is also matched by allowed. filter may
// be a shared subscription ($share/<group>/<filter>) or a plain topic name.
func covers(allowed, filter string) bool {
	if strings.HasPrefix(filter, "$share/") {
		rest := strings.SplitN(filter, "/", 3)
		if len(rest) != 3 || rest[1] == "" {
			return false
		}
		filter = rest[2]
	}
	if strings.HasPrefix(filter, "$") {
		return false // $SYS and friends are not for kiosks or ledgers
	}
	a, f := strings.Split(allowed, "/"), strings.Split(filter, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(f) {
			return false
		}
		switch fl := f[i]; {
		case fl == "#":
			return false // filter reaches levels that allowed pins down
		case al == "+":
			// Any single level, including a '+' in the filter.
		case fl == "+" || fl != al:
			return false
		}
	}
	return len(f) == len(a)
}
