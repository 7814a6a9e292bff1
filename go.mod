module github.com/kioskd/kioskd

go 1.26.0

require (
	github.com/creack/pty v1.1.24
	go.bug.st/serial v1.8.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
