// Package receipts is the customer receipt: its model, money formatting, and rendering to plain
// text (previews, logs, the customer screen, tests) and to ESC/POS bytes for a thermal roll
// printer.
//
// Contracts it follows: money is int64 minor units + ISO 4217 code, and receipt_no is gapless
// per kiosk and tied to one topup_id (sync/CONTRACT.md §2); one original receipt per top-up,
// copies say COPY (the money invariants in kiosk/journal's package documentation); and the
// ESC/POS facts of devices/printer/escpos (ESC @, ESC a, ESC E, GS !, GS ( k QR, GS V 66 n,
// FS & / FS . with GB18030 on Chinese firmware).
//
// Rendering is a pure function of the Receipt and the Profile: no clock, no locale, no
// environment, so golden files and a reprint years later give the same bytes.
package receipts
