package gallery

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltBackend runs the contract (contract_test.go) on the embedded store, a data directory each.
func boltBackend() backend {
	return backend{
		schema: SchemaVersion,
		create: func(t *testing.T) string { return t.TempDir() },
		open:   func(dir string, opts Options) (Store, error) { return Open(dir, opts) },
		openAs: func(dir string, current int, step func() error) (Store, error) {
			mig := []migration{{from: current - 1, apply: func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketMeta).Put([]byte("migrated"), []byte("yes")); err != nil {
					return err
				}
				if step == nil {
					return nil
				}
				return step()
			}}}
			return openWith(dir, Options{}, current, mig)
		},
		marked: func(t *testing.T, dir string) bool {
			db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			marked := false
			_ = db.View(func(tx *bolt.Tx) error {
				marked = tx.Bucket(bucketMeta).Get([]byte("migrated")) != nil
				return nil
			})
			return marked
		},
	}
}

func TestBoltContract(t *testing.T) { runStoreContract(t, boltBackend()) }

func openTest(t *testing.T, dir string, opts Options) *Bolt {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRoundFloat16(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1}, {0, 0}, {-2.5, -2.5}, {1.0 / 3, 0.333251953125}, {65504, 65504}, {1e6, float32Inf()},
		{5.960464477539063e-08, 5.960464477539063e-08}, // smallest subnormal
		{2049, 2048}, // ties to even
	} {
		if got := RoundFloat16(c.in); got != c.want {
			t.Errorf("RoundFloat16(%v): got %v, want %v", c.in, got, c.want)
		}
	}
}

func float32Inf() float32 { return float32(1) / float32(zero) }

func TestSummarize(t *testing.T) {
	img := randomImage("a", 9, 6, 4)
	s := Summarize(img.Regions)
	if s.PerRegionClasses != SummaryTop || s.PerRegionAttrs != SummaryTop {
		t.Fatalf("per region: got %d/%d, want %d", s.PerRegionClasses, s.PerRegionAttrs, SummaryTop)
	}
	for i := range img.Regions.Len() {
		for name, c := range map[string]struct {
			got  []LabelProb
			row  []float32
			keep int
		}{
			"classes": {s.RegionClasses(i), img.Regions.ClassProbs[i*9 : (i+1)*9], 5},
			"attrs":   {s.RegionAttrs(i), img.Regions.AttrProbs[i*5 : (i+1)*5], 5},
		} {
			// Brute force: the entry at rank k has exactly k larger probabilities.
			for k, lp := range c.got {
				larger := 0
				for _, p := range c.row {
					if p > c.row[lp.Index] {
						larger++
					}
				}
				if larger != k || lp.Prob != f16(c.row[lp.Index]) {
					t.Errorf("region %d %s rank %d: index %d has %d larger, prob %v", i, name, k, lp.Index, larger, lp.Prob)
				}
			}
		}
	}
}

// TestBoltFileLock: one process holds a data directory; a second opener fails with a message
// that says why, and the file passes bbolt's check after writes.
func TestBoltFileLock(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	if _, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second open: got %v", err)
	}
	if _, err := s.PutImages(ctx, []*Image{randomImage("a", 1, 2, 8)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, FileName), Options{}); err == nil {
		t.Errorf("opening a file as a data directory: no error")
	}
}
