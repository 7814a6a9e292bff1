// Package sensors watches the kiosk's switch inputs on GPIO: the cabinet door, the vault
// (cassette) door and the tamper switch, or any other contact, through periph.io pins
// (gpio.PinIn; OpenPin for real pins by name, gpiotest pins in tests).
//
// Each input is set up with In(Pull, BothEdges) and followed by its own goroutine, which
// waits for edges with a timeout (Config.Poll) and reads the level after every wake: an edge
// only says "look now", the level is the fact, and a lost edge is caught at the next poll. A
// pin without edge detection is read every SampleInterval instead. A level is believed once
// it has held for the input's Debounce (contact bounce and short noise never reach the
// caller); Run reports each input's initial state that way and then every believed change,
// with the time the level began. Run's own goroutine calls the report function, one change
// at a time; when ctx ends Run stops the watchers and waits for them before it returns.
//
// Classify turns a state into the kiosk's condition (door open, vault open, tamper) as plain
// data, so that this package stays independent of the kiosk's health registry. Facts: door,
// vault and tamper switches are plain contacts on GPIO inputs and bounce, so they need
// debouncing; periph's gpio contract says WaitForEdge may coalesce edges and In flushes
// queued ones.
package sensors
