package lmdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fixture is testdata/fixture.json: what make_fixture.py wrote with py-lmdb.
type fixture struct {
	Depth         int      `json:"depth"`
	BranchPages   int      `json:"branch_pages"`
	OverflowPages int      `json:"overflow_pages"`
	Entries       [][3]any `json:"entries"` // base64 key, sha256 of value, value length
	parsed        []entry
}

type entry struct {
	key    []byte
	sha    string
	length int
}

func loadFixture(t *testing.T) *fixture {
	raw, err := os.ReadFile(filepath.Join("testdata", "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Entries {
		k, _ := base64.StdEncoding.DecodeString(e[0].(string))
		f.parsed = append(f.parsed, entry{k, e[1].(string), int(e[2].(float64))})
	}
	if f.Depth < 2 || f.BranchPages < 1 || f.OverflowPages < 3 {
		t.Fatalf("the fixture does not exercise branches and overflow pages: %+v", f)
	}
	return &f
}

func digest(v []byte) string {
	s := sha256.Sum256(v)
	return hex.EncodeToString(s[:])
}

func TestReadFixture(t *testing.T) {
	f := loadFixture(t)
	db, err := Open(filepath.Join("testdata", "fixture.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Len() != len(f.parsed) {
		t.Errorf("Len: got %d, want %d", db.Len(), len(f.parsed))
	}
	// ForEach: every entry, in key order, with its value.
	i := 0
	err = db.ForEach(func(k, v []byte) error {
		if i >= len(f.parsed) {
			t.Fatalf("more entries than the %d written", len(f.parsed))
		}
		e := f.parsed[i]
		if !bytes.Equal(k, e.key) || len(v) != e.length || digest(v) != e.sha {
			t.Errorf("entry %d: key %q (%d bytes value), want %q (%d bytes)", i, k, len(v), e.key, e.length)
		}
		i++
		return nil
	})
	if err != nil || i != len(f.parsed) {
		t.Fatalf("ForEach: %d entries, %v", i, err)
	}
	// Get: every key, and keys that are not there (before, between and after the stored ones).
	for _, e := range f.parsed {
		v, ok, err := db.Get(e.key)
		if err != nil || !ok || digest(v) != e.sha {
			t.Errorf("Get(%q): ok %v, err %v", e.key, ok, err)
		}
	}
	for _, k := range []string{"", "\x00", "key-0000a", "key-9999", "zzz", "big-", "key-02"} {
		if _, ok, err := db.Get([]byte(k)); ok || err != nil {
			t.Errorf("Get(%q): ok %v, err %v; want absent", k, ok, err)
		}
	}
	// The data file itself opens too.
	db2, err := Open(filepath.Join("testdata", "fixture.lmdb", "data.mdb"))
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
	stop := errors.New("stop")
	if err := db.ForEach(func(k, v []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ForEach returns fn's error: got %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "fixture.lmdb", "data.mdb"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, mutate := range map[string]func(b []byte) []byte{
		"empty":        func(b []byte) []byte { return nil },
		"not lmdb":     func(b []byte) []byte { return bytes.Repeat([]byte("x"), 8192) },
		"bad magic":    func(b []byte) []byte { b[16] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)/2] },
		"page garbage": func(b []byte) []byte { copy(b[3*4096:], bytes.Repeat([]byte{0xff}, 4096)); return b },
	} {
		b := mutate(bytes.Clone(raw))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := Open(p)
		if err == nil {
			err = db.ForEach(func(k, v []byte) error { return nil })
			db.Close()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzOpen: no input makes the reader panic or loop.
func FuzzOpen(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "fixture.lmdb", "data.mdb"))
	if err != nil {
		f.Fatal(err)
	}
	// Small seeds keep the fuzzer fast: the meta pages and the first tree pages.
	f.Add(raw[:3*4096], 100, byte(0))
	f.Add(raw[:6*4096], 4096*3+20, byte(0x5a))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, at int, v byte) {
		if len(b) > 0 && at >= 0 {
			b = bytes.Clone(b)
			b[at%len(b)] ^= v
		}
		p := filepath.Join(dir, "data.mdb")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := Open(p)
		if err != nil {
			return
		}
		defer db.Close()
		_ = db.ForEach(func(k, v []byte) error { return nil })
		_, _, _ = db.Get([]byte("key-0100"))
	})
}
