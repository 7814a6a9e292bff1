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
