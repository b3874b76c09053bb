// Package progress reports how far a long command has come, on standard error.
//
// On a terminal a Bar rewrites one line (at most five times a second); written to anything
// else (a redirected log, a pipe, a test's buffer) it prints a whole line at most every
// LogInterval and at the end, so that logs hold no carriage returns.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

const (
	// TerminalInterval is the shortest time between two redraws on a terminal.
	TerminalInterval = 200 * time.Millisecond
	// LogInterval is the shortest time between two lines in a log.
	LogInterval = 10 * time.Second
)

// Bar reports one task's progress: "LABEL: done/total UNIT (pct) rate/s, ETA left, NOTE".
// A nil *Bar reports nothing, so a quiet command passes nil. Its methods may be called from
// several goroutines.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	unit     string
	terminal bool
	start    time.Time
	last     time.Time // of the last line written; zero on a terminal until the first
	printed  bool      // something was written since the last newline (terminal only)
}

// New starts a bar writing to w; a nil w gives a nil bar (no output).
func New(w io.Writer, label, unit string) *Bar {
	if w == nil {
		return nil
	}
	if unit != "" {
		unit = " " + unit
	}
	b := &Bar{w: w, label: label, unit: unit, terminal: IsTerminal(w), start: time.Now()}
	if !b.terminal {
		b.last = b.start // a log's first line comes after LogInterval, or at the end
	}
	return b
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Update reports done of total; the last call (done == total) is always shown.
func (b *Bar) Update(done, total int, note string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	interval := LogInterval
	if b.terminal {
		interval = TerminalInterval
	}
	if done < total && now.Sub(b.last) < interval {
		return
	}
	b.last = now
	line := b.format(done, total, note, now)
	if b.terminal {
		fmt.Fprintf(b.w, "\r%s   ", line)
		b.printed = true
	} else {
		fmt.Fprintln(b.w, line)
	}
}

// Func adapts the bar to the callbacks the packages take.
func (b *Bar) Func() func(done, total int) {
	if b == nil {
		return nil
	}
	return func(done, total int) { b.Update(done, total, "") }
}

// Finish ends the bar's line on a terminal.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.printed {
		fmt.Fprintln(b.w)
		b.printed = false
	}
}

func (b *Bar) format(done, total int, note string, now time.Time) string {
	elapsed := max(now.Sub(b.start).Seconds(), 1e-9)
	rate := float64(done) / elapsed
	var s strings.Builder
	fmt.Fprintf(&s, "%s: %d/%d%s (%.0f%%) %.1f/s", b.label, done, total, b.unit,
		100*float64(done)/float64(max(total, 1)), rate)
	if done < total {
		left := time.Duration(float64(total-done) / max(rate, 1e-9) * float64(time.Second))
		fmt.Fprintf(&s, ", %s left", left.Round(time.Second))
	} else {
		fmt.Fprintf(&s, ", %s", now.Sub(b.start).Round(100*time.Millisecond))
	}
	if note != "" {
		s.WriteString(", " + note)
	}
	return s.String()
}

// Stages reports a task made of named stages, one bar per stage ("PREFIX STAGE"), as
// offline.EvalOptions.Progress wants; finish ends the last stage's line. A nil w reports
// nothing (report is then nil).
func Stages(w io.Writer, prefix string) (report func(stage string, done, total int), finish func()) {
	if w == nil {
		return nil, func() {}
	}
	var mu sync.Mutex
	cur, bar := "", (*Bar)(nil)
	report = func(stage string, done, total int) {
		mu.Lock()
		defer mu.Unlock()
		if stage != cur {
			bar.Finish()
			cur, bar = stage, New(w, prefix+" "+stage, "")
		}
		bar.Update(done, total, "")
	}
	finish = func() {
		mu.Lock()
		defer mu.Unlock()
		bar.Finish()
	}
	return report, finish
}
