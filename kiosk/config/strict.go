package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// checkDocument walks a config document token by token against the shape of Config before
// encoding/json fills the struct, because encoding/json is lenient in three ways a money
// machine cannot afford: it matches keys case-insensitively ("LIMITS" fills limits), it lets
// the last of two equal keys silently win (a second "limits" object replaces the first), and
// its errors for a value of the wrong type inside a custom type (a duration written as a
// number) do not say which key. The walk refuses all three and names the key by its path:
// "limits.session_max_minor", "acceptor.denominations[2].code", "wallet.keys.w1".
//
// It stops at the first problem: after a shape error the rest of the document cannot be
// matched to the struct reliably, and one precise message is more useful than a cascade.
func checkDocument(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	w := walker{dec: dec, src: b}
	if err := w.value(reflect.TypeFor[Config](), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

type walker struct {
	dec *json.Decoder
	src []byte
}

var durationType = reflect.TypeFor[Duration]()

// value checks the next JSON value against type t; path names it in errors ("" is the
// document itself).
func (w *walker) value(t reflect.Type, path string) error {
	tok, err := w.dec.Token()
	if err != nil {
		return w.syntax(err)
	}
	if tok == nil {
		// null for a list or map is the empty list or map (WriteFile writes nil ones so).
		// Anywhere else it would leave the default in place while looking like a setting.
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			return nil
		}
		return keyErr(path, "null is not a value here (leave the key out to keep the default)")
	}
	if t == durationType {
		s, ok := tok.(string)
		if !ok {
			return keyErr(path, "a duration must be a string like \"3s\" or \"250ms\", got %s", describe(tok))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return keyErr(path, "%q is not a duration (write it like \"3s\" or \"250ms\")", s)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if tok != json.Delim('{') {
			return keyErr(path, "expected an object, got %s", describe(tok))
		}
		return w.object(path, func(key string) (reflect.Type, error) {
			ft, ok := fieldType(t, key)
			if ok {
				return ft, nil
			}
			if name, ok := foldMatch(t, key); ok {
				return nil, keyErr(join(path, key), "unknown key: keys are case-sensitive, this one is spelled %q", name)
			}
			return nil, keyErr(join(path, key), "unknown key (misspelled, or not supported by this version)")
		})
	case reflect.Map:
		if tok != json.Delim('{') {
			return keyErr(path, "expected an object, got %s", describe(tok))
		}
		return w.object(path, func(string) (reflect.Type, error) { return t.Elem(), nil })
	case reflect.Slice:
		if tok != json.Delim('[') {
			return keyErr(path, "expected a list, got %s", describe(tok))
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return w.close()
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return keyErr(path, "expected a string, got %s", describe(tok))
		}
		return nil
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return keyErr(path, "expected true or false, got %s", describe(tok))
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return keyErr(path, "expected an integer, got %s", describe(tok))
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return keyErr(path, "%s is out of range", n)
			}
			return keyErr(path, "expected an integer, got %s", n)
		}
		return nil
	}
	// Config has no other kinds; a new field of another kind must be taught here first.
	return keyErr(path, "internal: no strict check for Go type %s", t)
}

// object walks the members of an object whose '{' was read; typeOf gives a key's value type
// or the error for an unknown key.
func (w *walker) object(path string, typeOf func(key string) (reflect.Type, error)) error {
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return w.syntax(err)
		}
		key := tok.(string) // the decoder guarantees a string key inside an object
		full := join(path, key)
		if seen[key] {
			return keyErr(full, "given twice (only one may be given: the last would silently win)")
		}
		seen[key] = true
		ft, err := typeOf(key)
		if err != nil {
			return err
		}
		if err := w.value(ft, full); err != nil {
			return err
		}
	}
	return w.close()
}

// close reads the '}' or ']' that ends the object or list.
func (w *walker) close() error {
	if _, err := w.dec.Token(); err != nil {
		return w.syntax(err)
	}
	return nil
}

// syntax reports a JSON syntax error with its line and column.
func (w *walker) syntax(err error) error {
	off := w.dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if off > int64(len(w.src)) {
		off = int64(len(w.src))
	}
	line := 1 + bytes.Count(w.src[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(w.src[:off], '\n'))
	return fmt.Errorf("not valid JSON at line %d, column %d: %v", line, col, err)
}

// fieldType finds the field whose json tag is exactly key.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for f := range t.Fields() {
		if name, ok := jsonName(f); ok && name == key {
			return f.Type, true
		}
	}
	return nil, false
}

// foldMatch finds the field encoding/json would have filled from key by its case-insensitive
// rule, to tell the author the right spelling.
func foldMatch(t reflect.Type, key string) (string, bool) {
	for f := range t.Fields() {
		if name, ok := jsonName(f); ok && strings.EqualFold(name, key) {
			return name, true
		}
	}
	return "", false
}

func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// keyErr is the one shape of every error that concerns a key: `key "a.b": what is wrong`.
func keyErr(path, format string, a ...any) error {
	if path == "" {
		return fmt.Errorf("the document: %s", fmt.Sprintf(format, a...))
	}
	return fmt.Errorf("key %q: %s", path, fmt.Sprintf(format, a...))
}

// describe names a JSON token for an error message.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "the string " + strconv.Quote(v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}
