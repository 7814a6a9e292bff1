package receipts_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kioskd/kioskd/hw-sim/escpossim"
	"github.com/kioskd/kioskd/receipts"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// escape makes ESC/POS bytes reviewable in a golden file without losing any: printable ASCII
// stays, every other byte is \xNN, and a real newline follows each LF.
func escape(b []byte) []byte {
	var out bytes.Buffer
	for _, c := range b {
		switch {
		case c == '\\':
			out.WriteString(`\\`)
		case c >= 0x20 && c < 0x7f:
			out.WriteByte(c)
		default:
			fmt.Fprintf(&out, `\x%02x`, c)
			if c == '\n' {
				out.WriteByte('\n')
			}
		}
	}
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.name, func(t *testing.T) {
			golden(t, f.name+".txt", receipts.RenderText(f.r, f.profile.Columns))
			b, err := receipts.RenderESCPOS(f.r, f.profile)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, f.name+".escpos", escape(b))
		})
	}
}

// TestRoundTrip prints every fixture through the emulator's decoder and checks that what came
// out of the "printer" is what the customer needs.
func TestRoundTrip(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.name, func(t *testing.T) {
			b, err := receipts.RenderESCPOS(f.r, f.profile)
			if err != nil {
				t.Fatal(err)
			}
			docs := escpossim.Decode(b)
			if len(docs) != 1 {
				t.Fatalf("decoded %d documents, want 1", len(docs))
			}
			d := docs[0]
			if !d.Cut || d.Incomplete {
				t.Errorf("cut=%v incomplete=%v", d.Cut, d.Incomplete)
			}
			for _, want := range []string{
				receipts.FormatMoney(f.r.Total, f.r.Currency),
				f.r.TopupID,
				fmt.Sprintf("%08d", f.r.ReceiptNo),
			} {
				if !strings.Contains(d.Text, want) {
					t.Errorf("decoded text lacks %q:\n%s", want, d.Text)
				}
			}
			if len(d.QR) != 1 || d.QR[0] != f.r.TopupID {
				t.Errorf("QR = %q, want [%q]", d.QR, f.r.TopupID)
			}
			if got := strings.Contains(d.Text, "COPY"); got != f.r.Copy {
				t.Errorf("COPY on paper = %v, want %v", got, f.r.Copy)
			}
			// The total is printed double size and bold.
			var total *escpossim.Line
			for i := range d.Lines {
				if strings.Contains(d.Lines[i].Text, receipts.FormatMinor(f.r.Total, f.r.Currency)) && d.Lines[i].Width == 2 {
					total = &d.Lines[i]
				}
			}
			if total == nil || !total.Bold || total.Height != 2 {
				t.Errorf("no bold double-size total line in %+v", d.Lines)
			}
			chinesePaper := f.r.Lang == receipts.LangZH && f.profile.Chinese
			if got := strings.Contains(d.Text, "合计"); got != chinesePaper {
				t.Errorf("Chinese labels on paper = %v, want %v", got, chinesePaper)
			}
			if chinesePaper && !strings.Contains(d.Text, "上海虹桥火车站") {
				t.Errorf("GB18030 location did not survive:\n%s", d.Text)
			}
			if f.r.Lang == receipts.LangZH && !f.profile.Chinese {
				if !strings.Contains(d.Text, "Shanghai Hongqiao") || strings.Contains(d.Text, "?") {
					t.Errorf("fallback location missing:\n%s", d.Text)
				}
			}
			for _, l := range d.Lines {
				if w := len([]rune(l.Text)) * l.Width; w > f.profile.Columns*2 {
					t.Errorf("line wider than the paper: %q", l.Text)
				}
			}
		})
	}
}

// TestWidth checks every line fits the paper, counting CJK as two columns and double-size
// lines as twice their width.
func TestWidth(t *testing.T) {
	for _, f := range fixtures() {
		for _, cols := range []int{32, 42, 48} {
			p := f.profile
			p.Columns = cols
			b, err := receipts.RenderESCPOS(f.r, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range escpossim.Decode(b)[0].Lines {
				if w := displayWidth(l.Text) * l.Width; w > cols {
					t.Errorf("%s at %d cols: %q is %d columns", f.name, cols, l.Text, w)
				}
			}
			for _, l := range strings.Split(string(receipts.RenderText(f.r, cols)), "\n") {
				if w := displayWidth(l); w > cols {
					t.Errorf("%s text at %d cols: %q is %d columns", f.name, cols, l, w)
				}
			}
		}
	}
}

func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && (r <= 0x115f || (r >= 0x2e80 && r <= 0xa4cf) || (r >= 0xac00 && r <= 0xd7a3) ||
			(r >= 0xf900 && r <= 0xfaff) || (r >= 0xfe30 && r <= 0xfe4f) || (r >= 0xff00 && r <= 0xff60) ||
			(r >= 0xffe0 && r <= 0xffe6) || r >= 0x20000):
			n += 2
		default:
			n++
		}
	}
	return n
}

func TestOriginalNeverSaysCopy(t *testing.T) {
	for _, f := range fixtures() {
		if f.r.Copy {
			continue
		}
		for _, lang := range []receipts.Lang{receipts.LangEN, receipts.LangZH} {
			r := f.r
			r.Lang = lang
			if s := string(receipts.RenderText(r, 48)); strings.Contains(s, "COPY") || strings.Contains(s, "副本") {
				t.Errorf("%s/%s original says COPY", f.name, lang)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	good := fixtures()[0].r
	cases := []struct {
		name string
		edit func(r *receipts.Receipt)
		want error
	}{
		{"total mismatch", func(r *receipts.Receipt) { r.Total++ }, receipts.ErrTotalMismatch},
		{"no kiosk", func(r *receipts.Receipt) { r.KioskID = "" }, receipts.ErrInvalid},
		{"bad currency", func(r *receipts.Receipt) { r.Currency = "cny" }, receipts.ErrInvalid},
		{"control in topup_id", func(r *receipts.Receipt) { r.TopupID = "a\x1b@b" }, receipts.ErrInvalid},
		{"unknown status", func(r *receipts.Receipt) { r.Status = "maybe" }, receipts.ErrInvalid},
		{"unknown outcome", func(r *receipts.Receipt) { r.Outcome = "" }, receipts.ErrInvalid},
		{"negative count", func(r *receipts.Receipt) { r.Notes[0].Count = -1 }, receipts.ErrInvalid},
		{"overflow", func(r *receipts.Receipt) { r.Notes[0].Count = math.MaxInt64 / 2 }, receipts.ErrInvalid},
		{"bad language", func(r *receipts.Receipt) { r.Lang = "fr" }, receipts.ErrInvalid},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("fixture invalid: %v", err)
	}
	for _, c := range cases {
		r := good
		r.Notes = append([]receipts.NoteLine(nil), good.Notes...)
		c.edit(&r)
		err := r.Validate()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if _, err := receipts.RenderESCPOS(r, receipts.Generic58); !errors.Is(err, c.want) {
			t.Errorf("%s: RenderESCPOS err = %v", c.name, err)
		}
	}
	if _, err := receipts.RenderESCPOS(good, receipts.Profile{Name: "tiny", Columns: 10}); !errors.Is(err, receipts.ErrProfile) {
		t.Errorf("tiny profile: %v", err)
	}
}

// TestNoCommandInjection: free text must never reach the printer as commands.
func TestNoCommandInjection(t *testing.T) {
	r := fixtures()[0].r
	r.Location = "evil\x1dV\x00\x1b@\x10\x04\x01 place"
	r.Hotline = "\x1bp\x00\x19\xfa"
	r.Account = "****\r\n1234"
	r.Uncertain = []receipts.UncertainItem{{ValueMinor: 100, Reason: "\x1d(k"}}
	for _, p := range []receipts.Profile{receipts.Generic58, receipts.Chinese58} {
		for _, lang := range []receipts.Lang{receipts.LangEN, receipts.LangZH} {
			r.Lang = lang
			b, err := receipts.RenderESCPOS(r, p)
			if err != nil {
				t.Fatal(err)
			}
			docs := escpossim.Decode(b)
			if len(docs) != 1 || len(docs[0].QR) != 1 {
				t.Fatalf("%s/%s: injected text changed the document structure: %d docs", p.Name, lang, len(docs))
			}
			if !strings.Contains(docs[0].Text, "evil") || !strings.Contains(docs[0].Text, "place") {
				t.Errorf("location lost:\n%s", docs[0].Text)
			}
			if bytes.Contains(b, []byte("\x1dV\x00")) || bytes.Contains(b, []byte("\x10\x04\x01")) {
				t.Errorf("%s/%s: raw command bytes from free text reached the stream", p.Name, lang)
			}
		}
	}
	txt := receipts.RenderText(r, 32)
	for _, c := range txt {
		if c < 0x20 && c != '\n' {
			t.Fatalf("control byte %#x in text rendering", c)
		}
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	for _, f := range fixtures() {
		a, _ := receipts.RenderESCPOS(f.r, f.profile)
		b, _ := receipts.RenderESCPOS(f.r, f.profile)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: two renders differ", f.name)
		}
	}
}

func TestNoQRProfile(t *testing.T) {
	p := receipts.Generic58
	p.QR = false
	b, err := receipts.RenderESCPOS(fixtures()[0].r, p)
	if err != nil {
		t.Fatal(err)
	}
	d := escpossim.Decode(b)[0]
	if len(d.QR) != 0 || !strings.Contains(d.Text, fixtures()[0].r.TopupID) {
		t.Errorf("without QR support: QR %q, reference printed %v", d.QR, strings.Contains(d.Text, fixtures()[0].r.TopupID))
	}
}

func TestCutModes(t *testing.T) {
	r := fixtures()[0].r
	for _, c := range []struct {
		mode receipts.CutMode
		tail []byte
		cut  bool
	}{
		{receipts.CutPartial, []byte{0x1d, 'V', 66, 3}, true},
		{receipts.CutFull, []byte{0x1d, 'V', 65, 3}, true},
		{receipts.CutNone, []byte{0x1b, 'd', 4}, false},
	} {
		p := receipts.Generic80
		p.Cut = c.mode
		b, err := receipts.RenderESCPOS(r, p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(b, c.tail) {
			t.Errorf("cut %d: stream ends % x", c.mode, b[len(b)-4:])
		}
		if got := escpossim.Decode(b)[0].Cut; got != c.cut {
			t.Errorf("cut %d: decoded cut %v", c.mode, got)
		}
	}
}

// TestChineseLocationWithoutFont: no Latin fallback and no CJK font: the location is left out
// rather than printed as a row of question marks.
func TestChineseLocationWithoutFont(t *testing.T) {
	r := fixtures()[2].r
	r.LocationLatin = ""
	b, err := receipts.RenderESCPOS(r, receipts.Generic58)
	if err != nil {
		t.Fatal(err)
	}
	d := escpossim.Decode(b)[0]
	if strings.Contains(d.Text, "Location") || strings.Contains(d.Text, "??") {
		t.Errorf("unprintable location printed:\n%s", d.Text)
	}
}

func TestProfiles(t *testing.T) {
	for _, p := range receipts.Profiles {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		if got, ok := receipts.ProfileByName(p.Name); !ok || got.Name != p.Name {
			t.Errorf("ProfileByName(%q)", p.Name)
		}
	}
	if _, ok := receipts.ProfileByName("nope"); ok {
		t.Error("unknown name found")
	}
	bad := receipts.Generic58
	bad.Dots = 100
	if err := bad.Validate(); !errors.Is(err, receipts.ErrProfile) {
		t.Errorf("100 dots for 32 columns: %v", err)
	}
	for tag, want := range map[string]receipts.Lang{"zh-CN": receipts.LangZH, "zh": receipts.LangZH, "en": receipts.LangEN, "": receipts.LangEN} {
		if got := receipts.ParseLang(tag); got != want {
			t.Errorf("ParseLang(%q) = %q", tag, got)
		}
	}
}

// TestPresenterESCPOS: on the presenter profile the text receipt too ends with the cut and
// the presenter's present-and-retract commands, which the emulator records.
func TestPresenterESCPOS(t *testing.T) {
	p := receipts.KioskPresenter80
	p.Raster = false
	b, err := receipts.Render(fixtures()[0].r, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := escpossim.Decode(b)
	if len(docs) != 1 || !docs[0].Cut || !docs[0].Presented || !docs[0].Retract {
		t.Fatalf("%+v", docs)
	}
}

// A follow-up top-up's receipt names the receipt it follows; any other receipt does not.
func TestFollowUpNamesItsReceipt(t *testing.T) {
	r := fixtures()[0].r
	r.ReceiptNo, r.FollowsReceiptNo = 8, 7
	for _, lang := range []receipts.Lang{receipts.LangEN, receipts.LangZH} {
		r.Lang = lang
		s := string(receipts.RenderText(r, 48))
		if !strings.Contains(s, "Follows receipt") || !strings.Contains(s, receipts.FormatReceiptNo(7)) {
			t.Errorf("%s: follow-up receipt does not name receipt 7:\n%s", lang, s)
		}
	}
	r.FollowsReceiptNo = 0
	if s := string(receipts.RenderText(r, 48)); strings.Contains(s, "Follows receipt") {
		t.Errorf("an ordinary receipt says it follows one:\n%s", s)
	}
}
