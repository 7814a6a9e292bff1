// Package receipts is the customer receipt: its model, money formatting, and rendering to plain
// text (previews, logs, the customer screen, tests) and to ESC/POS bytes for a thermal roll
// printer.
//
// Contracts it follows: DESIGN.md §3 (money is int64 minor units + ISO 4217 code; receipt_no is
// gapless per kiosk and tied to one topup_id), §4 invariant 2 (one original receipt per top-up,
// copies say COPY) and the ESC/POS facts in PROTOCOLS.md (ESC @, ESC a, ESC E, GS !, GS ( k QR,
// GS V 66 n, FS & / FS . with GB18030 on Chinese firmware).
//
// Rendering is a pure function of the Receipt and the Profile: no clock, no locale, no
// environment, so golden files and a reprint years later give the same bytes.
package receipts
