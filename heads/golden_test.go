package heads

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// goldenTolerance is the acceptance bound: every plan entry and the distance
// must match the PyTorch reference within this absolute difference.
const goldenTolerance = 1e-5

type goldenCase struct {
	Name       string      `json:"name"`
	Source     string      `json:"source"`
	Beta       float64     `json:"beta"`
	Iterations int         `json:"iterations"`
	K          int         `json:"k"`
	M          int         `json:"m"`
	N          int         `json:"n"`
	H          int         `json:"h"`
	Text       [][]float32 `json:"txt"` // float32 values, decoded exactly
	Regions    [][]float32 `json:"img"`
	Cost       [][]float64 `json:"cost"`
	Plan       [][]float64 `json:"plan"` // tokens × regions
	Distance   float64     `json:"distance"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	data, err := os.ReadFile("testdata/ipot_golden.json")
	if err != nil {
		t.Fatalf("%v (regenerate: make fixture)", err)
	}
	var doc struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) < 10 {
		t.Fatalf("golden file has %d cases", len(doc.Cases))
	}
	return doc.Cases
}

// TestAlignGolden compares Align with the batched PyTorch reference
// (models/uniter/ot.py, float64), including items of a padded batch.
func TestAlignGolden(t *testing.T) {
	var worstPlan, worstDist, worstCost float64
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			if len(c.Text) != c.M || len(c.Regions) != c.N || len(c.Plan) != c.M || len(c.Cost) != c.M {
				t.Fatalf("malformed case: m=%d n=%d txt=%d img=%d plan=%d", c.M, c.N, len(c.Text), len(c.Regions), len(c.Plan))
			}
			p := mustAlign(t, c.Text, c.Regions, OTOptions{Beta: c.Beta, Iterations: c.Iterations, InnerIterations: c.K})
			var dPlan, dCost float64
			for i := range c.M {
				if len(c.Plan[i]) != c.N || len(c.Cost[i]) != c.N {
					t.Fatalf("malformed case: row %d", i)
				}
				for j := range c.N {
					dPlan = math.Max(dPlan, math.Abs(p.Weights[i][j]-c.Plan[i][j]))
					dCost = math.Max(dCost, math.Abs(p.Cost[i][j]-c.Cost[i][j]))
				}
			}
			dDist := math.Abs(p.Distance - c.Distance)
			if !(dPlan <= goldenTolerance) || !(dDist <= goldenTolerance) || !(dCost <= goldenTolerance) {
				t.Errorf("max |Δ| plan %.3g, distance %.3g, cost %.3g; want <= %g", dPlan, dDist, dCost, goldenTolerance)
			}
			worstPlan, worstDist, worstCost = max(worstPlan, dPlan), max(worstDist, dDist), max(worstCost, dCost)
		})
	}
	t.Logf("max |Go - PyTorch| over all cases: plan %.3g, distance %.3g, cost %.3g", worstPlan, worstDist, worstCost)
}
