// Package pgtest starts a throwaway PostgreSQL server for tests: initdb into a temporary
// directory, postgres on a free loopback port (and a unix socket in that directory), stopped
// and removed at cleanup. When the machine runs tests as root, the server runs as the
// "postgres" user (or "nobody"), since postgres refuses to run as root.
//
// KIOSKD_TEST_PG_DSN names an existing server to use instead (tests then get a fresh schema
// each, and cannot stop or restart it). Without PostgreSQL the tests skip, unless
// KIOSKD_REQUIRE_SERVICES is set: then they fail.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server for tests.
type Server struct {
	// DSN connects to the server's "postgres" database as the superuser.
	DSN string
	// Port is the loopback TCP port (0 for an external server).
	Port int

	external bool
	dir      string // temp dir: data/, the socket, the log
	bin      string // directory of postgres and initdb
	cred     *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// skip skips tb, or fails it when the services are required.
func skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("KIOSKD_REQUIRE_SERVICES") != "" {
		tb.Fatalf("pgtest: %s (KIOSKD_REQUIRE_SERVICES is set)", msg)
	}
	tb.Skipf("pgtest: %s; install PostgreSQL or set KIOSKD_TEST_PG_DSN", msg)
}

// binDir finds the directory holding postgres and initdb: PATH first, then the newest
// /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if _, err := exec.LookPath(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	return "", errors.New("no postgres and initdb on PATH or in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start starts a server of the test's own, stopped at cleanup (or, with KIOSKD_TEST_PG_DSN,
// returns the external one).
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if errors.Is(err, errAbsent) {
		skip(tb, "%v", err)
	}
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

var errAbsent = errors.New("PostgreSQL not found")

func start() (*Server, error) {
	if dsn := os.Getenv("KIOSKD_TEST_PG_DSN"); dsn != "" {
		return &Server{DSN: dsn, external: true}, nil
	}
	bin, err := binDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errAbsent, err)
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if s.dir, err = os.MkdirTemp("", "kioskd-pgtest-"); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			os.RemoveAll(s.dir)
			return nil, err
		}
	}
	if s.Port, err = freePort(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "-A", "trust",
		"--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// unprivileged is the user the server runs as when the tests run as root.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("running as root and no postgres or nobody user to run the server as")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir // root's working directory may be closed to the server's user
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	// The server dies with the test binary, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Start starts the server (again, after Stop) and waits until it accepts connections.
func (s *Server) Start() error {
	if s.external {
		return errors.New("pgtest: an external server cannot be started")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.data(), "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN)
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s", s.logTail())
		case <-time.After(50 * time.Millisecond): // polling an external process's readiness
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after 60 s: %v\n%s", err, s.logTail())
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop stops the server with a fast shutdown (clients are disconnected, nothing committed is
// lost); Start starts it again on the same port and data.
func (s *Server) Stop() error {
	if s.external {
		return errors.New("pgtest: an external server cannot be stopped")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown; a process already gone is fine
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	return nil
}

// CanRestart reports whether Stop and Start work (not for an external server).
func (s *Server) CanRestart() bool { return !s.external }

// Close stops the server and removes its files.
func (s *Server) Close() {
	if s.external {
		return
	}
	_ = s.Stop()
	_ = os.RemoveAll(s.dir)
}

var schemaN atomic.Int64

// NewDSN creates a fresh, empty schema and returns a DSN whose connections use it (via
// search_path): each test gets its own tables on a shared server.
func (s *Server) NewDSN(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t_%d_%d_%d", os.Getpid(), time.Now().UnixNano(), schemaN.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	return WithSearchPath(s.DSN, name)
}

// WithSearchPath returns dsn with its connections' search_path set to schema.
func WithSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dsn) + " search_path=" + schema
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
}

// Shared returns one server for the whole test binary, started on first use; StopShared
// (from TestMain) stops it. Tests that stop or restart a server use Start instead.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.s, shared.err = start() })
	if errors.Is(shared.err, errAbsent) {
		skip(tb, "%v", shared.err)
	}
	if shared.err != nil {
		tb.Fatalf("pgtest: %v", shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started.
func StopShared() {
	if shared.s != nil {
		shared.s.Close()
	}
}

// BinDir returns the directory holding postgres and initdb, or why there is none: for a
// program that wants to say what is missing before it starts anything.
func BinDir() (string, error) { return binDir() }
