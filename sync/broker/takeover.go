package broker

import (
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverWait bounds how long a connection taking over a client id waits for the old
// connection's clean-up. It ends within a scheduler round in practice; the bound only keeps a
// wedged old connection from holding the new one forever.
const takeoverWait = 5 * time.Second

// takeoverHook makes a session takeover finish the old connection before the new one is
// registered. A client that reconnects with the id of a connection the broker still holds (a
// ledger or kiosk restarted faster than its old TCP connection was torn down) takes the
// session over. mochi disconnects the old connection from the new connection's goroutine,
// while the old connection's own goroutine, when it saw the disconnect before mochi marked
// it taken over, unsubscribes and deletes the client by id: after the new connection
// registered, that deleted the new client, which then stayed connected and subscribed as far
// as it knew, and received nothing (TestTakeoverKeepsNewSession). Waiting here, before mochi
// looks for an existing session, for the old connection to be fully done orders the two.
type takeoverHook struct {
	mqtt.HookBase
	srv *mqtt.Server
	ln  *listener
	log *slog.Logger
}

func (h *takeoverHook) ID() string { return "kioskd-takeover" }

func (h *takeoverHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (h *takeoverHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old == cl || old.Net.Conn == nil {
		return
	}
	done := h.ln.finished(old.Net.Conn)
	if done == nil {
		return // already finished, or not a connection of ours (mochi handles it)
	}
	_ = h.srv.DisconnectClient(old, packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]
	select {
	case <-done:
	case <-time.After(takeoverWait):
		h.log.Warn("broker: the connection whose session is taken over did not finish", "client", cl.ID, "after", takeoverWait)
	}
}
