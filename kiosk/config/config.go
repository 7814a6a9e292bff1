// Package config is kioskd's versioned configuration file.
//
// The file is JSON with a top-level "version". Decoding is strict, because a typo on a
// machine that handles money must not silently fall back to a default: every key must be
// one this version knows, spelled exactly (keys are case-sensitive, unlike encoding/json's
// matching), given once at any depth (a second "limits" object is an error, not a silent
// replacement), and of its key's type. Every error names the key by its path
// ("limits.session_max_minor", "acceptor.denominations[2].code"). A missing file is
// different from an invalid one: Load returns ErrNotExist for the first so the daemon can
// say "no config at PATH" instead of a parse error. Durations are Go duration strings
// ("250ms", "3s"). Amounts are integer minor units within MaxDenominationMinor and
// MaxLimitMinor.
//
// Two settings are refused unless the file opts in explicitly: a broker URL without TLS
// (mqtt.allow_insecure) and a customer screen listening on anything but loopback
// (http.allow_remote). A kiosk id may not be a service's identity on the broker
// (ReservedIDs).
package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kioskd/kioskd/devices/acceptor/registry"
	"github.com/kioskd/kioskd/devices/scanner/hidscan"
	"github.com/kioskd/kioskd/sync/wire"
)

// Version is the config format version this code reads.
const Version = 1

// ErrNotExist is returned by Load when the file does not exist.
var ErrNotExist = errors.New("config: file does not exist")

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string like \"3s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is the whole file.
type Config struct {
	Version  int      `json:"version"`
	Kiosk    Kiosk    `json:"kiosk"`
	Journal  Journal  `json:"journal"`
	Acceptor Acceptor `json:"acceptor"`
	Printer  Printer  `json:"printer"`
	Scanner  Scanner  `json:"scanner"`
	Sensors  []Sensor `json:"sensors"`
	Limits   Limits   `json:"limits"`
	Session  Session  `json:"session"`
	Wallet   Wallet   `json:"wallet"`
	MQTT     MQTT     `json:"mqtt"`
	HTTP     HTTP     `json:"http"`
	Control  Control  `json:"control"`
	// ServiceMenu is the technicians' menu on the kiosk's own screen.
	ServiceMenu ServiceMenu `json:"service_menu"`
	// Metrics is the Prometheus view of the kiosk (off unless configured).
	Metrics Metrics `json:"metrics"`
	Log     Log     `json:"log"`
}

// Kiosk identifies the machine.
type Kiosk struct {
	ID       string `json:"id"`
	Location string `json:"location"`
	Timezone string `json:"timezone"`
	Currency string `json:"currency"`
	Language string `json:"language"`
	Hotline  string `json:"hotline"`
}

// Journal locates the journal file.
type Journal struct {
	Path string `json:"path"`
	// LockWait bounds the wait for the journal's lock at start (a previous kioskd still
	// exiting); after it, kioskd gives up with an error instead of running a second instance.
	LockWait Duration `json:"lock_wait"`
}

// Denomination maps a device code to a value.
type Denomination struct {
	Code       int   `json:"code"`
	ValueMinor int64 `json:"value_minor"`
}

// Acceptor configures the bill acceptor.
type Acceptor struct {
	Driver        string         `json:"driver"`
	Port          string         `json:"port"`
	Denominations []Denomination `json:"denominations"`
	PollInterval  Duration       `json:"poll_interval"`
	// RecoveryTimeout bounds how long start-up waits for the unit to report what happened
	// to a note in transit before it becomes an uncertain item.
	RecoveryTimeout Duration `json:"recovery_timeout"`
	// SSP configures ITL SSP/eSSP units (driver "ssp").
	SSP SSP `json:"ssp"`
	// Pulse configures a pulse-output unit on GPIO (driver "pulse"); its denomination codes
	// are pulse counts.
	Pulse Pulse `json:"pulse"`
	// CassetteCapacity is how many notes the cassette holds: the heartbeat's fill ratio, so
	// that operations send a collection before it is full.
	CassetteCapacity int64 `json:"cassette_capacity"`
}

// Pulse configures a pulse acceptor: pins by periph name (e.g. "GPIO17") and timing.
type Pulse struct {
	CreditPin  string `json:"credit_pin"`
	InhibitPin string `json:"inhibit_pin"`
	// ActiveLevel of a pulse on the credit line: "low" (open collector, the usual) or "high".
	ActiveLevel string `json:"active_level"`
	// InhibitLevel is the level of the inhibit line that stops the unit: "high" or "low".
	InhibitLevel string `json:"inhibit_level"`
	// PullUp enables the SoC's pull-up on the credit line (no external resistor).
	PullUp   bool     `json:"pull_up"`
	MinWidth Duration `json:"min_width"`
	MaxWidth Duration `json:"max_width"`
	MaxGap   Duration `json:"max_gap"`
	Debounce Duration `json:"debounce"`
}

// Sensor is a door, vault or tamper switch on a GPIO input.
type Sensor struct {
	// Name: "cabinet_door", "vault_door", "tamper", or another name (generic alarm).
	Name        string   `json:"name"`
	Pin         string   `json:"pin"`
	ActiveLevel string   `json:"active_level"`
	Debounce    Duration `json:"debounce"`
}

// SSP configures an ITL unit.
type SSP struct {
	// Encrypt uses eSSP (AES-128 with a Diffie-Hellman key and the fixed key below).
	Encrypt bool `json:"encrypt"`
	// FixedKeyFile holds the unit's 64-bit fixed key as 16 hex digits. It is a secret: a
	// file readable by kioskd only, never the config itself, never logged.
	FixedKeyFile string `json:"fixed_key_file"`
}

// Printer configures the receipt printer.
type Printer struct {
	Enabled bool   `json:"enabled"`
	Port    string `json:"port"`
	Baud    int    `json:"baud"`
	Profile string `json:"profile"`
	// FontFile is the CJK TrueType/OpenType font raster profiles draw with ("" searches the
	// Debian locations of fonts-wqy-microhei and fonts-noto-cjk).
	FontFile string `json:"font_file"`
}

// PrinterProfiles are the printer.profile names: ESC/POS text with the printer's own font
// (generic: Latin only, chinese: GB18030), raster images for printers without a Chinese
// font, and a kiosk presenter printer (Custom VKP80 class).
var PrinterProfiles = []string{"generic80", "generic58", "chinese80", "chinese58", "raster80", "raster58", "presenter80"}

// Scanner configures the QR scanner: a serial line scanner (port, baud) or a USB HID
// keyboard-wedge scanner (hid.device), not both; neither means the kiosk has no scanner.
type Scanner struct {
	Port string     `json:"port"`
	Baud int        `json:"baud"`
	HID  ScannerHID `json:"hid"`
}

// ScannerHID configures a USB HID keyboard-wedge scanner, read through evdev with an
// exclusive grab (devices/scanner/hidscan).
type ScannerHID struct {
	// Device is the scanner's event device: an absolute path (/dev/input/event3, or better
	// the stable /dev/input/by-id/usb-..-event-kbd), or a bare name looked up in
	// /dev/input/by-id.
	Device string `json:"device"`
	// Suffix is the key the scanner sends after each code: "enter" (default), "tab", or
	// "none" (the inter-character timeout ends a code).
	Suffix string `json:"suffix"`
	// InterCharTimeout abandons a code whose next key does not come within it (20ms to 2s;
	// 0 or absent means 200ms).
	InterCharTimeout Duration `json:"inter_char_timeout"`
}

// Configured says whether the kiosk has a QR scanner.
func (s Scanner) Configured() bool { return s.Port != "" || s.HID.Device != "" }

// Limits bound what a session may take.
type Limits struct {
	// SessionMaxMinor caps one top-up whatever the ledger allows.
	SessionMaxMinor int64 `json:"session_max_minor"`
	// OfflineSessionMaxMinor caps one top-up when the ledger cannot be asked.
	OfflineSessionMaxMinor int64 `json:"offline_session_max_minor"`
	// OfflineTotalMaxMinor caps all unacknowledged top-ups together while offline.
	OfflineTotalMaxMinor int64 `json:"offline_total_max_minor"`
}

// Session tunes the customer flow.
type Session struct {
	AuthzTimeout  Duration `json:"authz_timeout"`
	IdleTimeout   Duration `json:"idle_timeout"`
	AcceptTimeout Duration `json:"accept_timeout"`
	SettleTimeout Duration `json:"settle_timeout"`
	AckWait       Duration `json:"ack_wait"`
	// ShutdownGrace bounds a graceful stop (SIGTERM): park the note in transit, close the
	// session, flush the outbox. Keep it below systemd's TimeoutStopSec.
	ShutdownGrace Duration `json:"shutdown_grace"`
	ResultDisplay Duration `json:"result_display"`
}

// Wallet lists the wallet public keys by key id (base64 of the 32-byte Ed25519 key).
type Wallet struct {
	Keys map[string]string `json:"keys"`
}

// MQTT configures the uplink.
type MQTT struct {
	Broker       string            `json:"broker"`
	CAFile       string            `json:"ca_file"`
	CertFile     string            `json:"cert_file"`
	KeyFile      string            `json:"key_file"`
	Username     string            `json:"username"`
	PasswordFile string            `json:"password_file"`
	LedgerKeys   map[string]string `json:"ledger_keys"`
	// OpsKeys are the operations console's public keys by key id (base64 Ed25519), which
	// sign remote commands (down/cmd). They are kept apart from LedgerKeys: whoever can
	// command a kiosk cannot credit money, and the reverse. Without ops keys the kiosk does
	// not take remote commands.
	OpsKeys     map[string]string `json:"ops_keys"`
	Heartbeat   Duration          `json:"heartbeat"`
	MaxInFlight int               `json:"max_in_flight"`
	RetryMin    Duration          `json:"retry_min"`
	RetryMax    Duration          `json:"retry_max"`
	// AllowInsecure permits a broker URL without TLS (tcp://, mqtt://). Only the demo and
	// tests set it: on a real kiosk the link carries money and must be TLS with a client
	// certificate.
	AllowInsecure bool `json:"allow_insecure"`
}

// HTTP configures the customer screen and local API.
type HTTP struct {
	Listen string `json:"listen"`
	// AllowRemote permits a listen address other than loopback. The customer screen and the
	// local API (finish, cancel, diagnostics) have no authentication: they are for the
	// browser on the kiosk itself.
	AllowRemote bool `json:"allow_remote"`
}

// Control configures the technicians' control socket (kioskctl).
type Control struct {
	// Socket is the UNIX socket kioskctl talks to; "" turns the control API off.
	Socket string `json:"socket"`
	// Group may use the socket besides root and kioskd's own user: the socket file gets
	// this group and mode 0660, and a peer outside it is refused.
	Group string `json:"group"`
}

// ServiceMenu configures the technicians' service menu on the kiosk's own screen: a page on
// its own loopback port, opened with the cabinet door open (or the customer screen's gesture,
// when Gesture is set) and unlocked with a role PIN.
type ServiceMenu struct {
	// Listen is the menu's loopback address ("127.0.0.1:8091"); "" turns it off.
	Listen string `json:"listen"`
	// Gesture lets a technician open the menu from the customer screen (a long press on
	// its title) with the door closed; the PIN still guards everything.
	Gesture bool `json:"gesture"`
	// PINHashes are first-install PIN hashes by role slot ("admin", "technician_2"):
	// argon2id PHC strings (or bcrypt). Hashes set remotely (set_credentials) or by an
	// admin in the menu take precedence slot by slot.
	PINHashes map[string]string `json:"pin_hashes"`
}

// Metrics configures the kiosk's Prometheus metrics: an HTTP /metrics endpoint, a
// node_exporter textfile, both or neither.
type Metrics struct {
	// Listen is the /metrics address ("127.0.0.1:9101"); "" turns the endpoint off.
	Listen string `json:"listen"`
	// AllowRemote permits a listen address other than loopback. The metrics carry no
	// money or account, but the port has no authentication: scrape through a tunnel or
	// the node_exporter textfile unless the network in front of the kiosk is trusted.
	AllowRemote bool `json:"allow_remote"`
	// Textfile is a node_exporter textfile collector file ("/var/lib/node_exporter/textfile/kioskd.prom");
	// "" writes none. It is rewritten atomically every TextfileEvery.
	Textfile      string   `json:"textfile"`
	TextfileEvery Duration `json:"textfile_every"`
}

// Log configures logging.
type Log struct {
	Level string `json:"level"`
}

// Default returns the defaults every loaded file starts from.
func Default() Config {
	return Config{
		Version: Version,
		Kiosk:   Kiosk{Timezone: "UTC", Language: "en"},
		Journal: Journal{Path: "/var/lib/kioskd/journal.db", LockWait: Duration(10 * time.Second)},
		Acceptor: Acceptor{Driver: "id003", PollInterval: Duration(200 * time.Millisecond),
			RecoveryTimeout: Duration(20 * time.Second), CassetteCapacity: DefaultCassetteCapacity},
		Printer: Printer{Enabled: true, Baud: 9600, Profile: "generic80"},
		Scanner: Scanner{Baud: 9600, HID: ScannerHID{Suffix: "enter", InterCharTimeout: Duration(200 * time.Millisecond)}},
		Session: Session{AuthzTimeout: Duration(3 * time.Second), IdleTimeout: Duration(60 * time.Second),
			AcceptTimeout: Duration(120 * time.Second), SettleTimeout: Duration(30 * time.Second),
			AckWait: Duration(3 * time.Second), ResultDisplay: Duration(15 * time.Second), ShutdownGrace: Duration(10 * time.Second)},
		MQTT:    MQTT{Heartbeat: Duration(30 * time.Second), MaxInFlight: 4, RetryMin: Duration(time.Second), RetryMax: Duration(5 * time.Minute)},
		HTTP:    HTTP{Listen: "127.0.0.1:8080"},
		Control: Control{Socket: "/run/kioskd/kioskd.sock", Group: "kioskd"},
		Metrics: Metrics{TextfileEvery: Duration(15 * time.Second)},
		Log:     Log{Level: "info"},
	}
}

// Load reads and validates the file at path.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%w: %s", ErrNotExist, path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	// Relative file names in the config are relative to the config file.
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.Journal.Path, &c.Acceptor.SSP.FixedKeyFile, &c.MQTT.CAFile, &c.MQTT.CertFile, &c.MQTT.KeyFile, &c.MQTT.PasswordFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, nil
}

// Parse decodes and validates a config document.
//
// The document is first walked against Config's shape (strict.go): keys must match exactly,
// in case too, no key may be given twice at any depth, and every value must have its key's
// type and range. Only then does encoding/json fill the struct, starting from Default.
func Parse(b []byte) (Config, error) {
	if !json.Valid(b) {
		return Config{}, checkDocument(b) // reports where the syntax breaks
	}
	// The version comes first: a file for another version is refused as such, not as a
	// list of keys this version does not know.
	var probe struct {
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Config{}, errors.New("the document: expected a JSON object")
	}
	if probe.Version == nil {
		return Config{}, errors.New(`missing "version"`)
	}
	v, err := strconv.Atoi(string(probe.Version))
	if err != nil {
		return Config{}, fmt.Errorf(`key "version": must be the integer %d, got %s`, Version, shortJSON(probe.Version))
	}
	if v != Version {
		return Config{}, fmt.Errorf(`key "version": is %d, this kioskd reads version %d`, v, Version)
	}
	if err := checkDocument(b); err != nil {
		return Config{}, err
	}
	c := Default()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// checkDocument accepts only what decodes; this is a safety net.
		return Config{}, explain(err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// explain turns encoding/json errors into messages that name the key.
func explain(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("key %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return fmt.Errorf("unknown key %s (misspelled, or not supported by this version)", strings.TrimPrefix(s, "json: unknown field "))
	}
	return err
}

var currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)

// Drivers lists the acceptor drivers this build knows (devices/acceptor/registry).
var Drivers = registry.Names()

// Bounds on money in the file. They are far above any real setting and far below int64
// overflow, so that sums of limits, notes and counts can never wrap, and a value that is out
// of them (a pasted 9223372036854775807, a sign error) is a mistake, not a setting.
const (
	// MaxDenominationMinor bounds one note: 1,000,000.00 in minor units.
	MaxDenominationMinor int64 = 100_000_000
	// MaxLimitMinor bounds every limit: 100,000,000.00 in minor units.
	MaxLimitMinor int64 = 10_000_000_000
	// MaxDeviceCode bounds a denomination code: ID-003 escrow codes, CCNET bill types, SSP
	// channels and pulse counts each travel in one byte.
	MaxDeviceCode = 255
)

// ReservedIDs are the identities of the services on the broker. A kiosk's id is its MQTT
// client id, username and certificate CN; a kiosk named like a service would share that
// service's identity and, on the in-process broker, its ACL (read every kiosk's up topics,
// write their down topics). Compared case-insensitively: certificate CNs and operators'
// eyes are not reliably case-sensitive.
var ReservedIDs = []string{"ledger", "ledgerd", "fleetd", "ops"}

// reservedPrefixes are the client id prefixes the services use for their instances
// (ledgerd-<hostname>, ledger-1 in the demo, fleetd-<n>).
var reservedPrefixes = []string{"ledger-", "ledgerd-", "fleetd-"}

// reservedID says why id is reserved, or "" if it is not.
func reservedID(id string) string {
	l := strings.ToLower(id)
	if slices.Contains(ReservedIDs, l) {
		return "it is the identity of a service on the broker"
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(l, p) {
			return fmt.Sprintf("ids starting with %q name service instances on the broker", p)
		}
	}
	return ""
}

// checkBroker checks mqtt.broker: a URL the uplink can dial, with TLS unless the file opts
// out explicitly.
func checkBroker(m MQTT, bad func(key, format string, a ...any)) {
	u, err := url.Parse(m.Broker)
	if err != nil || u.Host == "" {
		bad("mqtt.broker", "must be a URL like \"ssl://mqtt.example.net:8883\", got %q", m.Broker)
		return
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "tcps":
	case "tcp", "mqtt":
		if !m.AllowInsecure {
			bad("mqtt.broker", "%q has no TLS: use ssl:// with a client certificate (a plain link is allowed only with \"mqtt.allow_insecure\": true, for demos and tests)", m.Broker)
		}
	default:
		bad("mqtt.broker", "scheme must be ssl, tls, mqtts or tcps (tcp or mqtt with mqtt.allow_insecure), got %q", u.Scheme)
	}
}

// checkListen checks http.listen: loopback unless the file opts out explicitly.
func checkListen(h HTTP, bad func(key, format string, a ...any)) {
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil || port == "" {
		bad("http.listen", "must be host:port like \"127.0.0.1:8080\", got %q", h.Listen)
		return
	}
	if h.AllowRemote {
		return
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return
	}
	bad("http.listen", "%q is reachable from the network, and the customer screen and local API have no authentication: listen on 127.0.0.1 (another address is allowed only with \"http.allow_remote\": true)", h.Listen)
}

// checkMetrics checks the metrics keys: a loopback listen address unless the file opts out
// explicitly (like http.listen), and a textfile that node_exporter reads (*.prom, absolute).
func checkMetrics(m Metrics, bad func(key, format string, a ...any)) {
	if m.Listen != "" {
		host, port, err := net.SplitHostPort(m.Listen)
		switch {
		case err != nil || port == "":
			bad("metrics.listen", "must be host:port like \"127.0.0.1:9101\", got %q", m.Listen)
		case m.AllowRemote:
		case host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback():
		default:
			bad("metrics.listen", "%q is reachable from the network and /metrics has no authentication: listen on 127.0.0.1 (another address is allowed only with \"metrics.allow_remote\": true)", m.Listen)
		}
	}
	if m.Textfile != "" {
		if !filepath.IsAbs(m.Textfile) || !strings.HasSuffix(m.Textfile, ".prom") {
			bad("metrics.textfile", "must be an absolute path ending in .prom (node_exporter reads only those), got %q", m.Textfile)
		}
		if d := m.TextfileEvery.D(); d < time.Second || d > time.Hour {
			bad("metrics.textfile_every", "must be between 1s and 1h, got %s", d)
		}
	}
}

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("key %q: %s", key, fmt.Sprintf(format, a...)))
	}
	if !wire.ValidKioskID(c.Kiosk.ID) {
		bad("kiosk.id", "must be 1-64 letters, digits, '_' or '-', got %q", c.Kiosk.ID)
	} else if reason := reservedID(c.Kiosk.ID); reason != "" {
		bad("kiosk.id", "%q is reserved: %s", c.Kiosk.ID, reason)
	}
	if !currencyRe.MatchString(c.Kiosk.Currency) {
		bad("kiosk.currency", "must be an ISO 4217 code like \"CNY\", got %q", c.Kiosk.Currency)
	}
	if _, err := time.LoadLocation(c.Kiosk.Timezone); err != nil {
		bad("kiosk.timezone", "%v", err)
	}
	if c.Printer.Profile != "" && !slices.Contains(PrinterProfiles, c.Printer.Profile) {
		bad("printer.profile", "unknown profile %q (known: %s)", c.Printer.Profile, strings.Join(PrinterProfiles, ", "))
	}
	if c.Kiosk.Language != "en" && c.Kiosk.Language != "zh" && c.Kiosk.Language != "zh-CN" {
		bad("kiosk.language", "must be \"zh-CN\" (or \"zh\") or \"en\", got %q", c.Kiosk.Language)
	}
	if c.Journal.Path == "" {
		bad("journal.path", "required")
	}
	if c.Journal.LockWait.D() < 0 || c.Journal.LockWait.D() > 5*time.Minute {
		bad("journal.lock_wait", "must be between 0 and 5m")
	}
	drv, derr := registry.Lookup(c.Acceptor.Driver)
	if derr != nil {
		bad("acceptor.driver", "unknown driver %q (known: %s)", c.Acceptor.Driver, strings.Join(Drivers, ", "))
	}
	if derr == nil && !drv.Serial {
		// A unit on GPIO pins; the only such driver is the pulse one, configured under
		// acceptor.pulse.
		if c.Acceptor.Pulse.CreditPin == "" {
			bad("acceptor.pulse.credit_pin", "required for a pulse acceptor")
		}
		for key, v := range map[string]string{"acceptor.pulse.active_level": c.Acceptor.Pulse.ActiveLevel, "acceptor.pulse.inhibit_level": c.Acceptor.Pulse.InhibitLevel} {
			if v != "" && v != "low" && v != "high" {
				bad(key, "must be \"low\" or \"high\"")
			}
		}
	} else if c.Acceptor.Port == "" {
		bad("acceptor.port", "required")
	}
	for i, sn := range c.Sensors {
		if sn.Name == "" || sn.Pin == "" {
			bad(fmt.Sprintf("sensors[%d]", i), "name and pin are required")
		}
		if sn.ActiveLevel != "" && sn.ActiveLevel != "low" && sn.ActiveLevel != "high" {
			bad(fmt.Sprintf("sensors[%d].active_level", i), "must be \"low\" or \"high\"")
		}
	}
	if len(c.Acceptor.Denominations) == 0 {
		bad("acceptor.denominations", "at least one denomination is required")
	}
	seen := map[int]bool{}
	for i, d := range c.Acceptor.Denominations {
		if d.ValueMinor <= 0 || d.ValueMinor > MaxDenominationMinor {
			bad(fmt.Sprintf("acceptor.denominations[%d].value_minor", i), "must be between 1 and %d (minor units), got %d", MaxDenominationMinor, d.ValueMinor)
		}
		if d.Code < 0 || d.Code > MaxDeviceCode {
			bad(fmt.Sprintf("acceptor.denominations[%d].code", i), "must be between 0 and %d (every protocol carries the code in one byte), got %d", MaxDeviceCode, d.Code)
		}
		if seen[d.Code] {
			bad(fmt.Sprintf("acceptor.denominations[%d].code", i), "code %d listed twice", d.Code)
		}
		seen[d.Code] = true
	}
	if c.Acceptor.Driver == "ssp" && c.Acceptor.SSP.Encrypt && c.Acceptor.SSP.FixedKeyFile == "" {
		bad("acceptor.ssp.fixed_key_file", "required with acceptor.ssp.encrypt: the well-known default key is refused")
	}
	if c.Acceptor.PollInterval.D() < 20*time.Millisecond || c.Acceptor.PollInterval.D() > 5*time.Second {
		bad("acceptor.poll_interval", "must be between 20ms and 5s")
	}
	if c.Printer.Enabled && c.Printer.Port == "" {
		bad("printer.port", "required when printer.enabled")
	}
	checkScanner(c.Scanner, bad)
	if c.Limits.SessionMaxMinor <= 0 || c.Limits.SessionMaxMinor > MaxLimitMinor {
		bad("limits.session_max_minor", "must be between 1 and %d (minor units), got %d", MaxLimitMinor, c.Limits.SessionMaxMinor)
	}
	if c.Limits.OfflineSessionMaxMinor < 0 || c.Limits.OfflineSessionMaxMinor > c.Limits.SessionMaxMinor {
		bad("limits.offline_session_max_minor", "must be between 0 (no offline top-ups) and limits.session_max_minor, got %d", c.Limits.OfflineSessionMaxMinor)
	}
	if c.Limits.OfflineTotalMaxMinor < c.Limits.OfflineSessionMaxMinor || c.Limits.OfflineTotalMaxMinor > MaxLimitMinor {
		bad("limits.offline_total_max_minor", "must be between limits.offline_session_max_minor and %d (minor units), got %d", MaxLimitMinor, c.Limits.OfflineTotalMaxMinor)
	}
	for name, d := range map[string]Duration{"session.authz_timeout": c.Session.AuthzTimeout, "session.idle_timeout": c.Session.IdleTimeout,
		"session.settle_timeout": c.Session.SettleTimeout, "session.result_display": c.Session.ResultDisplay,
		"session.accept_timeout": c.Session.AcceptTimeout, "acceptor.recovery_timeout": c.Acceptor.RecoveryTimeout,
		"session.shutdown_grace": c.Session.ShutdownGrace} {
		if d <= 0 {
			bad(name, "must be positive")
		}
	}
	if len(c.Wallet.Keys) == 0 {
		bad("wallet.keys", "at least one wallet public key is required")
	}
	for kid, k := range c.Wallet.Keys {
		if _, err := DecodePublicKey(k); err != nil {
			bad("wallet.keys."+kid, "%v", err)
		}
	}
	if c.MQTT.Broker != "" {
		checkBroker(c.MQTT, bad)
		if len(c.MQTT.LedgerKeys) == 0 {
			bad("mqtt.ledger_keys", "required with mqtt.broker: acks are accepted only when signed by the ledger")
		}
		for kid, k := range c.MQTT.LedgerKeys {
			if _, err := DecodePublicKey(k); err != nil {
				bad("mqtt.ledger_keys."+kid, "%v", err)
			}
		}
		checkOpsKeys(c.MQTT, bad)
		if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
			bad("mqtt.cert_file", "mqtt.cert_file and mqtt.key_file go together")
		}
		if c.MQTT.MaxInFlight < 1 || c.MQTT.MaxInFlight > 64 {
			bad("mqtt.max_in_flight", "must be between 1 and 64")
		}
		if c.MQTT.RetryMin <= 0 || c.MQTT.RetryMax < c.MQTT.RetryMin {
			bad("mqtt.retry_min", "retry_min must be positive and at most retry_max")
		}
	}
	if c.Acceptor.CassetteCapacity < 1 || c.Acceptor.CassetteCapacity > MaxCassetteCapacity {
		bad("acceptor.cassette_capacity", "must be between 1 and %d notes, got %d", MaxCassetteCapacity, c.Acceptor.CassetteCapacity)
	}
	checkListen(c.HTTP, bad)
	if c.Control.Socket != "" && !filepath.IsAbs(c.Control.Socket) {
		bad("control.socket", "must be an absolute path like \"/run/kioskd/kioskd.sock\", got %q", c.Control.Socket)
	}
	if l := c.ServiceMenu.Listen; l != "" {
		host, _, err := net.SplitHostPort(l)
		if ip := net.ParseIP(host); err != nil || !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			bad("service_menu.listen", "must be a loopback address like \"127.0.0.1:8091\" (the menu is for the kiosk's own screen), got %q", l)
		}
	}
	checkMetrics(c.Metrics, bad)
	for k, h := range c.ServiceMenu.PINHashes {
		if !strings.HasPrefix(h, "$argon2id$") && !strings.HasPrefix(h, "$2") {
			bad("service_menu.pin_hashes."+k, "must be an argon2id or bcrypt hash (never a PIN)")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error")
	}
	return errors.Join(errs...)
}

// checkScanner checks the scanner section: one scanner, and a HID device named so that it
// is found again after an unplug.
func checkScanner(sc Scanner, bad func(key, format string, a ...any)) {
	if sc.Port != "" && sc.HID.Device != "" {
		bad("scanner.hid.device", "a kiosk has one scanner: set scanner.port (serial) or scanner.hid.device (USB HID), not both")
	}
	if d := sc.HID.Device; d != "" {
		switch {
		case strings.Contains(d, "/") && !filepath.IsAbs(d):
			bad("scanner.hid.device", "must be an absolute path like \"/dev/input/by-id/usb-...-event-kbd\" or a name in /dev/input/by-id, got %q", d)
		case filepath.Clean(d) != d || strings.ContainsAny(d, " \t\n") || d == "." || d == "..":
			bad("scanner.hid.device", "%q is not a clean device path or name", d)
		}
	}
	if _, err := hidscan.ParseSuffix(sc.HID.Suffix); err != nil {
		bad("scanner.hid.suffix", "%v", err)
	}
	// 0 is the default (200ms): a Scanner built in code without the HID part stays valid.
	if t := sc.HID.InterCharTimeout.D(); t != 0 && (t < 20*time.Millisecond || t > 2*time.Second) {
		bad("scanner.hid.inter_char_timeout", "must be between 20ms and 2s, got %v", t)
	}
}

// DecodePublicKey reads a base64 (standard or URL, padded or not) Ed25519 public key.
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("an Ed25519 public key is %d bytes, this is %d", ed25519.PublicKeySize, len(b))
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, errors.New("not base64")
}

// Location returns the kiosk's time zone.
func (c *Config) Location() *time.Location {
	l, err := time.LoadLocation(c.Kiosk.Timezone)
	if err != nil {
		return time.UTC
	}
	return l
}

// WriteFile writes c atomically (temp file, fsync, rename) so a power cut never leaves half a
// config.
func WriteFile(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadFixedKey reads an SSP fixed key file: 16 hex digits (the 64-bit key as ITL writes it).
func ReadFixedKey(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("ssp fixed key: %w", err)
	}
	s := strings.TrimPrefix(strings.TrimSpace(string(b)), "0x")
	if len(s) != 16 {
		return 0, errors.New("ssp fixed key: want 16 hex digits")
	}
	k, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, errors.New("ssp fixed key: not hex")
	}
	return k, nil
}

// DefaultCassetteCapacity is acceptor.cassette_capacity when the file does not say (a
// common 1000-note cassette); MaxCassetteCapacity bounds it.
const (
	DefaultCassetteCapacity = 1000
	MaxCassetteCapacity     = 100000
)

// checkOpsKeys checks mqtt.ops_keys: each a valid key, and none of them a ledger key (by
// value): a key that could sign both commands and acks would join the two powers the
// separation keeps apart.
func checkOpsKeys(m MQTT, bad func(key, format string, a ...any)) {
	ledger := map[string]bool{}
	for _, k := range m.LedgerKeys {
		if pub, err := DecodePublicKey(k); err == nil {
			ledger[string(pub)] = true
		}
	}
	for kid, k := range m.OpsKeys {
		pub, err := DecodePublicKey(k)
		if err != nil {
			bad("mqtt.ops_keys."+kid, "%v", err)
			continue
		}
		if ledger[string(pub)] {
			bad("mqtt.ops_keys."+kid, "is also a ledger key: ops keys and ledger keys must differ")
		}
	}
}

// Validate checks a set of limits as the config file's limits are checked: the remote
// set_limits command applies the same rules to its overlay.
func (l Limits) Validate() error {
	var errs []error
	if l.SessionMaxMinor <= 0 || l.SessionMaxMinor > MaxLimitMinor {
		errs = append(errs, fmt.Errorf("session_max_minor must be between 1 and %d (minor units), got %d", MaxLimitMinor, l.SessionMaxMinor))
	}
	if l.OfflineSessionMaxMinor < 0 || l.OfflineSessionMaxMinor > l.SessionMaxMinor {
		errs = append(errs, fmt.Errorf("offline_session_max_minor must be between 0 and session_max_minor, got %d", l.OfflineSessionMaxMinor))
	}
	if l.OfflineTotalMaxMinor < l.OfflineSessionMaxMinor || l.OfflineTotalMaxMinor > MaxLimitMinor {
		errs = append(errs, fmt.Errorf("offline_total_max_minor must be between offline_session_max_minor and %d (minor units), got %d", MaxLimitMinor, l.OfflineTotalMaxMinor))
	}
	return errors.Join(errs...)
}

// shortJSON renders a raw value for an error message on one line and at bounded length,
// whatever the file holds there: a message is one line per problem, and a hostile or broken
// file must not make the log line long.
func shortJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return "an unreadable value"
	}
	const max = 40
	s := buf.String()
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.QuoteToGraphic(s)
}
