package heads

import (
	"errors"
	"math"
	"testing"
)

func TestMatchFromLogits(t *testing.T) {
	const maxF = math.MaxFloat32
	inf := float32(math.Inf(1))
	tests := []struct {
		name   string
		logits [2]float32
		score  float64 // want softmax(logits)[1]
	}{
		{"equal", [2]float32{0, 0}, 0.5},
		{"equal large", [2]float32{1e30, 1e30}, 0.5},
		{"ln3", [2]float32{0, float32(math.Log(3))}, 0.75},
		{"+2", [2]float32{-1, 1}, 0.8807970779778823},           // 1/(1+e^-2)
		{"-2", [2]float32{1, -1}, 0.11920292202211755},          // e^-2/(1+e^-2)
		{"typical", [2]float32{-3.25, 4.5}, 0.9995694429186754}, // 1/(1+e^-7.75)
		{"+40", [2]float32{-20, 20}, 1 - 4.248354255291589e-18},
		{"-40", [2]float32{20, -20}, 4.248354255291589e-18},
		{"-100 (float32 subnormal)", [2]float32{50, -50}, 3.720075976020836e-44},
		{"-200 underflows to 0", [2]float32{100, -100}, 0},
		{"+1000", [2]float32{-500, 500}, 1},
		{"max vs -max", [2]float32{-maxF, maxF}, 1},
		{"-max vs max", [2]float32{maxF, -maxF}, 0},
		{"match +Inf", [2]float32{0, inf}, 1},
		{"no-match +Inf", [2]float32{inf, 0}, 0},
		{"match -Inf", [2]float32{0, -inf}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := MatchFromLogits(tt.logits)
			if m.Logit != tt.logits[1] && !(math.IsNaN(float64(m.Logit)) && math.IsNaN(float64(tt.logits[1]))) {
				t.Errorf("Logit = %v, want %v", m.Logit, tt.logits[1])
			}
			got := float64(m.Score)
			if math.IsNaN(got) || got < 0 || got > 1 {
				t.Fatalf("Score = %v, want a probability", got)
			}
			want := float64(float32(tt.score)) // the float32 nearest to the true value
			if got != want && math.Abs(got-want) > 1e-7*want {
				t.Errorf("Score = %.10g, want %.10g", got, tt.score)
			}
		})
	}
}

func TestMatchFromLogitsNaN(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, l := range [][2]float32{{nan, 0}, {0, nan}, {inf, inf}} {
		if s := MatchFromLogits(l).Score; !math.IsNaN(float64(s)) {
			t.Errorf("MatchFromLogits(%v).Score = %v, want NaN", l, s)
		}
	}
}

func TestMatchFromLogitsSymmetry(t *testing.T) {
	// P(match | a, b) + P(match | b, a) = 1 and the score is monotone in logits[1].
	prev := float32(-1)
	for x := float32(-30); x <= 30; x += 0.25 {
		p := MatchFromLogits([2]float32{0.5, x}).Score
		q := MatchFromLogits([2]float32{x, 0.5}).Score
		if math.Abs(float64(p+q)-1) > 1e-6 {
			t.Errorf("x=%v: p+q = %v", x, p+q)
		}
		if p < prev {
			t.Errorf("score not monotone at x=%v: %v < %v", x, p, prev)
		}
		prev = p
	}
}

func TestMatchesFromLogits(t *testing.T) {
	got, err := MatchesFromLogits([]float32{0, 0, -1, 1, 2, -3.5})
	if err != nil {
		t.Fatal(err)
	}
	want := []Match{
		MatchFromLogits([2]float32{0, 0}),
		MatchFromLogits([2]float32{-1, 1}),
		MatchFromLogits([2]float32{2, -3.5}),
	}
	if len(got) != len(want) {
		t.Fatalf("got %d matches, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("match %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, err := MatchesFromLogits(nil); err != nil || len(got) != 0 {
		t.Errorf("MatchesFromLogits(nil) = %v, %v; want empty, nil", got, err)
	}
	if _, err := MatchesFromLogits([]float32{1, 2, 3}); !errors.Is(err, ErrLogitsShape) {
		t.Errorf("odd length: err = %v, want ErrLogitsShape", err)
	}
}
