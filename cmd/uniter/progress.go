package main

import (
	"fmt"
	"io"
	"time"
)

// progressLine reports done/total on one rewritten line of w (at most every 200 ms, and at the
// end) as "LABEL: done/total UNIT (pct) rate/s, Ns left"; printed, when not nil, is set once
// anything was written, so the caller can end the line.
func progressLine(w io.Writer, label, unit string, start time.Time, printed *bool) func(done, total int) {
	var last time.Time
	if unit != "" {
		unit = " " + unit
	}
	return func(done, total int) {
		now := time.Now()
		if done < total && now.Sub(last) < 200*time.Millisecond {
			return
		}
		last = now
		if printed != nil {
			*printed = true
		}
		rate := float64(done) / max(now.Sub(start).Seconds(), 1e-9)
		fmt.Fprintf(w, "\r%s: %d/%d%s (%3.0f%%) %.1f/s, %.0fs left   ", label, done, total, unit,
			100*float64(done)/float64(max(total, 1)), rate, float64(total-done)/max(rate, 1e-9))
	}
}
