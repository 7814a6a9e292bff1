module github.com/kioskd/kioskd

go 1.26.0

require (
	github.com/creack/pty v1.1.24
	golang.org/x/sys v0.50.0
)

require (
	go.bug.st/serial v1.8.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
