package progress

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogOutputHasWholeLines(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, "index", "images")
	for i := 1; i <= 100; i++ {
		b.Update(i, 100, "3 new")
	}
	b.Finish()
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Errorf("log output holds a carriage return: %q", out)
	}
	// 100 fast updates inside one LogInterval: only the final one is written.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "index: 100/100 images (100%)") || !strings.HasSuffix(lines[0], ", 3 new") {
		t.Errorf("got %q, want one line 'index: 100/100 images (100%%) …, 3 new'", out)
	}
}

func TestStagesEndEachStage(t *testing.T) {
	var buf bytes.Buffer
	report, finish := Stages(&buf, "eval")
	report("detect", 1, 2)
	report("detect", 2, 2)
	report("itm", 5, 5)
	finish()
	out := buf.String()
	if !strings.Contains(out, "eval detect: 2/2") || !strings.Contains(out, "eval itm: 5/5") || strings.Contains(out, "1/2") {
		t.Errorf("got %q, want the final line of each stage only", out)
	}
}

func TestNilIsQuiet(t *testing.T) {
	var b *Bar = New(nil, "x", "")
	b.Update(1, 2, "") // must not panic
	b.Finish()
	if b.Func() != nil {
		t.Error("a nil bar's Func should be nil (no callback)")
	}
	if report, finish := Stages(nil, "x"); report != nil {
		t.Error("Stages(nil) should give a nil report")
	} else {
		finish()
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if !IsTerminal(null) {
		t.Errorf("%s is a character device: want true", os.DevNull)
	}
}
