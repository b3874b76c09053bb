package api_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/pgtest"
)

// TestReadyzFollowsTheDatabase: with a PostgreSQL gallery, a database that refuses connections
// makes /readyz 503, gallery requests 503 gallery_unavailable and /metrics' uniter_gallery_up
// 0; once it accepts them again all recover without a restart. /metrics reports the pool.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	ts := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 1 << 20}})
	st, err := gallery.OpenPostgres(ctx, dsn, gallery.Options{FeatureDim: ts.bundle.Manifest.Model.FeatureDim})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	labels := api.LabelsFor(ts.bundle)
	ts.SetGallery(retrieval.New(st, ts.bundle, retrieval.Config{Source: "detector:tiny-random",
		Labels: retrieval.Labels{Classes: labels.Classes, Attributes: labels.Attributes, Background: labels.Background}}))
	h := ts.Handler()
	wantStatus(t, "readyz with the database up", send(h, jsonReq("GET", "/readyz", "")), 200, "")
	wantStatus(t, "listing with the database up", send(h, jsonReq("GET", "/v1/images", "")), 200, "")
	metric := func(series string) float64 {
		t.Helper()
		body := send(h, jsonReq("GET", "/metrics", "")).Body.String()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics has no %s", series)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if up := metric("uniter_gallery_up"); up != 1 {
		t.Errorf("uniter_gallery_up = %v with the database up", up)
	}
	if n := metric("uniter_gallery_db_acquires_total"); n < 2 {
		t.Errorf("uniter_gallery_db_acquires_total = %v after two requests", n)
	}
	if idle, max := metric(`uniter_gallery_db_connections{state="idle"}`), metric("uniter_gallery_db_max_connections"); idle < 1 || max < idle {
		t.Errorf("pool: %v idle connections of at most %v", idle, max)
	}

	// The maintenance database of the same server turns connections to ours off and ends them.
	db := regexp.MustCompile(`dbname='([^']+)'`).FindStringSubmatch(dsn)[1]
	admin := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, regexp.MustCompile(`dbname='[^']+'`).ReplaceAllString(dsn, "dbname='postgres'"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	admin(`ALTER DATABASE "` + db + `" ALLOW_CONNECTIONS false`)
	admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + db + `'`)
	wantStatus(t, "readyz with the database refusing connections", send(h, jsonReq("GET", "/readyz", "")), 503, "not_ready")
	wantStatus(t, "listing with the database refusing connections", send(h, jsonReq("GET", "/v1/images", "")), 503, "gallery_unavailable")
	if up := metric("uniter_gallery_up"); up != 0 {
		t.Errorf("uniter_gallery_up = %v with the database refusing connections", up)
	}

	admin(`ALTER DATABASE "` + db + `" ALLOW_CONNECTIONS true`)
	deadline := time.Now().Add(10 * time.Second)
	for send(h, jsonReq("GET", "/readyz", "")).Code != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	wantStatus(t, "readyz after the database came back", send(h, jsonReq("GET", "/readyz", "")), 200, "")
	wantStatus(t, "listing after the database came back", send(h, jsonReq("GET", "/v1/images", "")), 200, "")
	if up := metric("uniter_gallery_up"); up != 1 {
		t.Errorf("uniter_gallery_up = %v after the database came back", up)
	}
}
