package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kioskd/kioskd/kiosk/ctl"
)

// logCommand reads kioskd's recent logs for the bundle; a machine without it (no systemd
// journal) gets a bundle without logs.
var logCommand = []string{"journalctl", "-u", "kioskd", "--no-pager", "-o", "short-iso", "--since", "-3days", "-n", "20000"}

func (l *live) diag(args []string) error {
	if len(args) != 1 || args[0] != "bundle" {
		return errors.New("usage: kioskctl diag bundle [-o FILE]")
	}
	var d ctl.Diag
	if err := l.c.Get(l.ctx, "/v1/diag", &d); err != nil {
		return err
	}
	name := l.bundle
	if name == "" {
		name = fmt.Sprintf("kioskd-diag-%s-%s.tar.gz", safeName(d.Status.KioskID), d.At.UTC().Format("20060102T150405Z"))
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("diag bundle: %w", err)
	}
	files, err := writeBundle(l.ctx, f, l.c, d)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("diag bundle: %w", err)
	}
	return l.print(map[string]any{"file": name, "contents": files}, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s: %s\n", name, strings.Join(files, ", "))
	})
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// writeBundle writes the bundle's tar.gz to w and returns the names of its files.
func writeBundle(ctx context.Context, w io.Writer, c *ctl.Client, d ctl.Diag) ([]string, error) {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	var names []string
	add := func(name string, data []byte) error {
		names = append(names, name)
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: int64(len(data)), ModTime: d.At, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	js := func(v any) []byte {
		b, _ := json.MarshalIndent(v, "", "  ")
		return append(b, '\n')
	}
	versions := map[string]string{}
	for k, v := range d.Versions {
		versions[k] = v
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		versions["kioskctl"] = bi.Main.Version
	}
	var notes []string
	if err := add("status.json", js(d.Status)); err != nil {
		return nil, err
	}
	if err := add("devices.json", js(d.Devices)); err != nil {
		return nil, err
	}
	if err := add("conditions.json", js(d.Conds)); err != nil {
		return nil, err
	}
	if err := add("versions.json", js(versions)); err != nil {
		return nil, err
	}
	// The config as kioskd redacted it: file names of keys and passwords, never their
	// contents (kioskctl reads no key file).
	if err := add("config.redacted.json", js(d.Config)); err != nil {
		return nil, err
	}
	var export bytes.Buffer
	if err := c.Export(ctx, &export); err != nil {
		notes = append(notes, "journal export failed: "+err.Error())
	} else if err := add("journal.jsonl", export.Bytes()); err != nil {
		return nil, err
	}
	if logs, err := recentLogs(ctx); err != nil {
		notes = append(notes, "no logs: "+err.Error())
	} else if err := add("kioskd.log", logs); err != nil {
		return nil, err
	}
	readme := fmt.Sprintf("kioskd diagnostics bundle\nkiosk %s, taken %s\n", d.Status.KioskID, d.At.UTC().Format(time.RFC3339))
	for _, n := range notes {
		readme += n + "\n"
	}
	if err := add("README.txt", []byte(readme)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return names, gz.Close()
}

func recentLogs(ctx context.Context) ([]byte, error) {
	if len(logCommand) == 0 {
		return nil, errors.New("no log command")
	}
	if _, err := exec.LookPath(logCommand[0]); err != nil {
		return nil, fmt.Errorf("%s not available", logCommand[0])
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, logCommand[0], logCommand[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", logCommand[0], err)
	}
	return out, nil
}
