// Package ctl is kioskd's control API for technicians on site: kioskd serves it on a UNIX
// socket, kioskctl is its client.
//
// # Protocol
//
// HTTP/1.1 over the UNIX socket (the host part of the URL is ignored). Every reply is JSON;
// an error is a non-2xx status with {"error": "..."}. Two replies are streams of JSON lines
// (application/x-ndjson): the journal export (one event a line) and maintenance on (one
// Progress a line, the last one with Done set).
//
//	GET  /v1/status            Status
//	GET  /v1/devices           []Device
//	GET  /v1/conditions        []health.Condition
//	GET  /v1/counters          Counters
//	GET  /v1/outbox            []OutboxItem
//	GET  /v1/uncertain         []journal.Uncertain
//	GET  /v1/receipt/{no}      Receipt
//	POST /v1/journal/verify    Verify
//	GET  /v1/journal/export    JSON lines, one journal.Record each
//	POST /v1/maintenance       body MaintenanceRequest; JSON lines of Progress
//	POST /v1/reprint           body ReprintRequest; Reply
//	GET  /v1/diag              Diag
//	POST /v1/selftest/printer  PrinterTest
//	POST /v1/selftest/{device} SelfTest (acceptor, acceptor_note, scanner, sensors)
//	POST /v1/signoff           body SignOffRequest; Reply
//	POST /v1/update-gate       body UpdateGateRequest; UpdateGate (updategate.go)
//
// # Who may connect
//
// The socket file has mode 0660 and the configured group; in addition every connection's
// peer credentials (SO_PEERCRED) are checked: root, kioskd's own user and members of the
// group are served, anyone else gets 403 with the reason. A backend that implements Auditor
// journals every action (maintenance, reprint, self-tests, sign-offs) with the peer's uid.
package ctl

import (
	"time"

	"github.com/kioskd/kioskd/kiosk/health"
	"github.com/kioskd/kioskd/kiosk/journal"
	"github.com/kioskd/kioskd/kiosk/session"
)

// DefaultSocket is where kioskd listens unless its config says otherwise.
const DefaultSocket = "/run/kioskd/kioskd.sock"

// Status is what `kioskctl status` shows.
type Status struct {
	KioskID  string `json:"kiosk_id"`
	Currency string `json:"currency"`
	Version  string `json:"version"`
	BootID   string `json:"boot_id"`
	Uptime   string `json:"uptime"`
	// SafeMode is why the kiosk runs in safe mode (its journal failed its check); "" when not.
	SafeMode string         `json:"safe_mode,omitempty"`
	Engine   session.Status `json:"engine"`
	Journal  *journal.Stats `json:"journal,omitempty"`
}

// Device is one unit of the kiosk.
type Device struct {
	Name string `json:"name"`
	// State is "ok", "degraded", "failed" or "not configured".
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
	// Conditions are the active conditions that concern this device.
	Conditions []health.Condition `json:"conditions,omitempty"`
}

// Counters are the cassette counters since the last collection.
type Counters struct {
	Currency   string            `json:"currency"`
	Notes      int64             `json:"notes"`
	ValueMinor int64             `json:"value_minor"`
	ByValue    []DenominationRow `json:"by_value"`
}

// DenominationRow is one denomination's count in the cassette.
type DenominationRow struct {
	ValueMinor int64 `json:"value_minor"`
	Count      int64 `json:"count"`
	TotalMinor int64 `json:"total_minor"`
}

// OutboxItem is a top-up waiting for the ledger's ack.
type OutboxItem struct {
	journal.Topup
	AgeSeconds int64 `json:"age_s"`
}

// Receipt is a stored receipt record and its text as the receipt renderer lays it out.
type Receipt struct {
	Topup journal.Topup `json:"topup"`
	Text  string        `json:"text"`
}

// Verify is the result of a verification of the live journal.
type Verify struct {
	OK     bool                 `json:"ok"`
	Report journal.VerifyReport `json:"report"`
	Error  string               `json:"error,omitempty"`
}

// MaintenanceRequest asks to enter (On) or leave maintenance.
type MaintenanceRequest struct {
	On bool `json:"on"`
}

// Progress is one line of a maintenance request's reply.
type Progress struct {
	Progress string         `json:"progress"`
	Status   session.Status `json:"status"`
	Done     bool           `json:"done,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// ReprintRequest asks for a COPY of a receipt.
type ReprintRequest struct {
	ReceiptNo uint64 `json:"receipt_no"`
}

// Reply is the reply of a command that only succeeds or fails.
type Reply struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// Diag is what kioskd contributes to a diagnostics bundle.
type Diag struct {
	At       time.Time          `json:"at"`
	Versions map[string]string  `json:"versions"`
	Status   Status             `json:"status"`
	Devices  []Device           `json:"devices"`
	Conds    []health.Condition `json:"conditions"`
	// Events counts the one-off happenings since start by kind (refused codes, ignored
	// scans, ...): what the heartbeat reports, for a technician on site.
	Events map[string]uint64 `json:"events,omitempty"`
	// MQTTConnected and Uplink describe the link to the ledger (Uplink: the uplink's
	// counters; nil without MQTT); Journal the journal's figures.
	MQTTConnected bool           `json:"mqtt_connected"`
	Uplink        any            `json:"uplink,omitempty"`
	Journal       *journal.Stats `json:"journal,omitempty"`
	// Config is the running configuration with every secret removed (see RedactConfig).
	Config any `json:"config"`
}

// PrinterTest is the result of a printer self-test.
type PrinterTest struct {
	Before  string `json:"before"`
	Printed bool   `json:"printed"`
	Error   string `json:"error,omitempty"`
	After   string `json:"after"`
}

// SelfTest is the result of a device's self-test: what was checked, each as a name and
// a value, in order.
type SelfTest struct {
	Device string     `json:"device"`
	OK     bool       `json:"ok"`
	Items  []TestItem `json:"items"`
	Error  string     `json:"error,omitempty"`
}

// TestItem is one line of a self-test.
type TestItem struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SignOffRequest signs off a condition (session.SignoffConditions) with a reason; Who is the
// technician's name as they give it (the server adds the uid it sees).
type SignOffRequest struct {
	Condition string `json:"condition"`
	Why       string `json:"why"`
	Who       string `json:"who,omitempty"`
}

// errorBody is the body of every error reply.
type errorBody struct {
	Error string `json:"error"`
}
