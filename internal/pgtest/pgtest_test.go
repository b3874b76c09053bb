package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStart(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two Starts gave one database: %s", a)
	}
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d tables, %v; want a fresh database", dsn, n, err)
		}
		var listen string
		if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil || listen != "" {
			t.Errorf("listen_addresses: got %q %v, want none (a Unix socket only)", listen, err)
		}
		_ = conn.Close(ctx)
	}
	// The server's folder holds the reaper's target; it exists while the binary runs.
	if _, err := os.Stat(filepath.Join(shared.base, "data", "postmaster.pid")); err != nil {
		t.Errorf("server folder: %v", err)
	}
}
