// Package pgtest gives tests a throw-away PostgreSQL server: Debian's postgresql, initdb into a
// temporary directory, started on a private Unix socket (no TCP), with fsync off. One server
// serves the whole test binary (started on the first Start); every Start creates a fresh
// database and drops it when its test ends. StartPrivate gives a test a durable server of its
// own that it may stop and start again (a database outage).
//
// The server is stopped (pg_ctl -m immediate) and its directory removed when the test binary
// exits, however it exits: a small reaper process, started beside the server, waits for the
// binary's end of a pipe to close (on a normal exit, a panic, a timeout or a SIGKILL alike) and
// then stops the server and removes the directory. Directories left by a reaper that could not
// run (a machine reset) are swept on the next start.
//
// When PostgreSQL is not installed the tests skip, unless UNITER_POSTGRES_TEST=require (as
// `make test` sets, after installing it with scripts/install-postgres.sh): then they fail.
// As root (initdb and postgres refuse to run as root), the server runs as the postgres user
// that Debian's package creates, and its directories belong to that user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
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

// EnvRequire names the variable that turns "PostgreSQL is not installed" from a skip into a
// failure: UNITER_POSTGRES_TEST=require.
const EnvRequire = "UNITER_POSTGRES_TEST"

// dirPrefix starts the name of every server directory (swept when left behind).
const dirPrefix = "uniter-pgtest-"

var errNotInstalled = errors.New("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin)")

// server is the test binary's PostgreSQL.
type server struct {
	bin    string // folder holding initdb, pg_ctl and postgres
	base   string // temporary folder: data/, sock/, server.log, owner
	socket string
	port   int
	cred   *syscall.Credential // the postgres user's, when running as root
	// reaper's end of the pipe is closed when this process exits, whatever the way; the
	// variable keeps the file (and its finalizer) alive until then.
	reaper *os.File
	// durable keeps PostgreSQL's crash safety (fsync, synchronous commit): a private server
	// that a test stops at once must keep what it committed; the shared one runs without.
	durable bool
}

// pgStart starts (or starts again) the server on its socket and port and waits until it
// accepts connections.
func (s *server) pgStart() error {
	data := filepath.Join(s.base, "data")
	opts := fmt.Sprintf("-k '%s' -p %d -c listen_addresses='' -c max_connections=300", s.socket, s.port)
	if !s.durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	logFile := filepath.Join(s.base, "server.log")
	if out, err := s.command("pg_ctl", "-D", data, "-l", logFile, "-o", opts, "-w", "-t", "120", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

var (
	mu      sync.Mutex
	shared  *server
	failure error
	dbCount atomic.Int64
)

// Start returns the DSN of a new, empty database on the test binary's server (started on the
// first call). The database is dropped when t ends; the server, when the test binary exits.
func Start(t testing.TB) string {
	t.Helper()
	srv, err := get()
	check(t, err)
	name := fmt.Sprintf("t%d_%s", dbCount.Add(1), dbName(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends the connections a test left open (pools not closed after a failure).
		if err := srv.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return srv.dsn(name)
}

// check skips the test when PostgreSQL is not installed (fails it with UNITER_POSTGRES_TEST=
// require) and fails it on any other error of starting the server.
func check(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errNotInstalled) && os.Getenv(EnvRequire) != "require" {
		t.Skipf("%v: skipping the PostgreSQL tests (install it with scripts/install-postgres.sh; %s=require makes this a failure)", err, EnvRequire)
	}
	if errors.Is(err, errNotInstalled) {
		t.Fatalf("pgtest: %v, and %s=require: install it with scripts/install-postgres.sh (make test does)", err, EnvRequire)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Private is a server of one test's own, which the test may stop and start again (a database
// outage), with one database, "uniter".
type Private struct{ s *server }

// StartPrivate starts a server for t alone, with fsync on (what it committed survives Stop);
// it is stopped and removed when t ends.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	s, err := start(true)
	check(t, err)
	t.Cleanup(func() {
		_ = s.stop()
		_ = os.RemoveAll(s.base)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.admin(ctx, "CREATE DATABASE uniter"); err != nil {
		t.Fatalf("pgtest: creating database uniter: %v", err)
	}
	return &Private{s: s}
}

// DSN is the database's connection string (the same after a restart).
func (p *Private) DSN() string { return p.s.dsn("uniter") }

// Stop stops the server at once, as a crash would (pg_ctl -m immediate): committed data
// survives, connections end.
func (p *Private) Stop(t testing.TB) {
	t.Helper()
	if err := p.s.stop(); err != nil {
		t.Fatalf("pgtest: stopping the server: %v", err)
	}
}

// Start starts the stopped server again on the same socket and port.
func (p *Private) Start(t testing.TB) {
	t.Helper()
	if err := p.s.pgStart(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// dbName makes a database name's readable part of a test name.
func dbName(test string) string {
	s := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(test, "_"))
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return s
}

func (s *server) dsn(db string) string {
	return fmt.Sprintf("host='%s' port=%d user=postgres dbname='%s' sslmode=disable", s.socket, s.port, db)
}

func (s *server) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func get() (*server, error) {
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && failure == nil {
		shared, failure = start(false)
	}
	return shared, failure
}

// binDir finds Debian's PostgreSQL programs: pg_ctl on PATH (Debian does not put it there;
// the image may link it), else the newest /usr/lib/postgresql/<version>/bin.
func binDir() (string, error) {
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return int(version(b)*1000 - version(a)*1000) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", errNotInstalled
}

func start(durable bool) (_ *server, err error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, port: 20000 + rand.IntN(40000), durable: durable}
	root := os.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, the server must run as the postgres user (Debian's package creates it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		root = "/tmp" // reachable by the postgres user, whatever TMPDIR is
	}
	if len(root) > 60 { // a Unix socket's path has at most 107 bytes
		root = "/tmp"
	}
	sweep(root, bin)
	if s.base, err = os.MkdirTemp(root, dirPrefix); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.stop()
			_ = os.RemoveAll(s.base)
		}
	}()
	s.socket = filepath.Join(s.base, "sock")
	if err := os.WriteFile(filepath.Join(s.base, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if err := os.Mkdir(s.socket, 0o700); err != nil {
		return nil, err
	}
	if s.cred != nil {
		for _, p := range []string{s.base, s.socket, filepath.Join(s.base, "owner")} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	data := filepath.Join(s.base, "data")
	if out, err := s.command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-locale", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// The reaper first, so that a server that starts is always stopped.
	if err := s.startReaper(data); err != nil {
		return nil, err
	}
	if err := s.pgStart(); err != nil {
		return nil, err
	}
	return s, nil
}

// command runs one of the server's programs, as the postgres user when this process is root.
func (s *server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.base
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *server) stop() error {
	data := filepath.Join(s.base, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return nil
	}
	return s.command("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()
}

// startReaper starts the process that stops the server and removes its folder once this
// process's end of a pipe closes, which the kernel does when this process exits in any way.
// It ignores the signals a terminal or a job runner sends to the test's process group, and
// runs in its own group.
func (s *server) startReaper(data string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	script := `trap '' INT TERM HUP QUIT; cat >/dev/null; "$0" -D "$1" -m immediate -w stop >/dev/null 2>&1; rm -rf "$2"`
	cmd := exec.Command("/bin/sh", "-c", script, filepath.Join(s.bin, "pg_ctl"), data, s.base)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }() // collects it if this process outlives it
	s.reaper = w
	return nil
}

// sweep stops the servers and removes the folders that a test binary left behind without its
// reaper running (its owner process gone and no reaper of its own), best effort.
func sweep(root, bin string) {
	dirs, _ := filepath.Glob(filepath.Join(root, dirPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // still running (or not ours to judge)
		}
		st, err := os.Stat(dir)
		if err != nil || time.Since(st.ModTime()) < time.Minute {
			continue // its reaper may be at work
		}
		s := &server{bin: bin, base: dir}
		if os.Geteuid() == 0 {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				s.cred = &syscall.Credential{Uid: sys.Uid, Gid: sys.Gid}
			}
		}
		_ = s.stop()
		_ = os.RemoveAll(dir)
	}
}
