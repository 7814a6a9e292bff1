package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to the decoder. Seeds are in testdata/fuzz/FuzzParse
// (the example, and one document per kind of refusal). Properties: Parse never panics; an
// error that concerns a key names it in the one `key "path": ...` shape; and a document Parse
// accepts writes back (as WriteFile does) to one that parses to the same Config, so what
// kioskd writes it can read.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleFixed(f)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse(doc)
		if err != nil {
			// Every message is about a key (by its path) or about the document as a whole.
			for line := range strings.Lines(err.Error()) {
				if !hasAnyPrefix(line, `key "`, "not valid JSON at line ", "trailing data", `missing "version"`, "the document: ") {
					t.Fatalf("error line %q names neither a key nor the document", line)
				}
			}
			return
		}
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("accepted %q but not its own rewrite %q: %v", doc, b, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("rewrite differs:\n got %+v\nwant %+v", back, c)
		}
	})
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
