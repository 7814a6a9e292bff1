package uitest

import (
	"net/http/httptest"
	"time"
)

// CloseServer shuts srv down for good, even while a page keeps reconnecting to it. A page's
// EventSource opens a new stream on its own after its connection is cut; httptest's Close
// waits for every active request and closes only idle connections, so a stream opened
// between CloseClientConnections and Close (or one that waits on its request's context)
// would keep Close waiting for ever. Cutting the connections again until Close returns ends
// such streams: once Close has closed the listener, no new one can come.
func CloseServer(srv *httptest.Server) {
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		srv.CloseClientConnections()
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}
