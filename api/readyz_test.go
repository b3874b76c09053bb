package api_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/pgtest"
)

// TestReadyzFollowsTheDatabase: with a PostgreSQL gallery, a database that refuses connections
// makes /readyz 503 and gallery requests 503 gallery_unavailable; once it accepts them again
// both recover without a restart.
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

	admin(`ALTER DATABASE "` + db + `" ALLOW_CONNECTIONS true`)
	deadline := time.Now().Add(10 * time.Second)
	for send(h, jsonReq("GET", "/readyz", "")).Code != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	wantStatus(t, "readyz after the database came back", send(h, jsonReq("GET", "/readyz", "")), 200, "")
	wantStatus(t, "listing after the database came back", send(h, jsonReq("GET", "/v1/images", "")), 200, "")
}
