// Package receipts is the customer receipt: its model, money formatting, and rendering to plain
// text (logs, tests), to ESC/POS bytes for a thermal roll printer, and to a picture: a PNG
// preview a person can check (RenderPNG) and the same picture sent as a raster image (GS v 0)
// to a printer without a Chinese font (RenderRaster; Render picks by profile).
//
// One layout, several renderers: build turns a Receipt into lines fitted to the printer's
// columns, and every renderer draws those lines, so the preview shows what the paper shows.
// Every word comes from the message catalogue (kiosk/i18n); Chinese receipts print the
// English text beside the Chinese. The picture needs a font with Chinese characters
// (LoadFont; by default the Debian fonts-wqy-microhei or fonts-noto-cjk files), and the QR
// code of the topup_id is encoded host-side for it.
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
