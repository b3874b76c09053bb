package ort

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// OpTime is the time one operator type took over a profile: the sum of its nodes' kernel runs.
type OpTime struct {
	Op    string        `json:"op"`
	Calls int           `json:"calls"` // kernel runs
	Time  time.Duration `json:"time_ns"`
}

// Profile is an ONNX Runtime profile (Config.ProfileDir) summed per operator type.
type Profile struct {
	Runs  int           `json:"runs"`  // session runs recorded
	Total time.Duration `json:"total"` // their wall time, as ONNX Runtime measured it
	Ops   []OpTime      `json:"ops"`   // the kernels' time per operator type, largest first
}

// profileEvent is one record of ONNX Runtime's profile (Chrome trace format): a node's kernel
// run ("cat": "Node", name NODE_kernel_time) or a whole run ("cat": "Session", name model_run).
type profileEvent struct {
	Cat  string `json:"cat"`
	Name string `json:"name"`
	Dur  int64  `json:"dur"` // microseconds
	Args struct {
		OpName string `json:"op_name"`
	} `json:"args"`
}

// ReadProfile sums the profile file an ONNX Runtime session wrote when it was closed.
func ReadProfile(path string) (*Profile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var events []profileEvent
	if err := json.Unmarshal(raw, &events); err != nil {
		return nil, fmt.Errorf("%s: not an ONNX Runtime profile: %w", path, err)
	}
	p := &Profile{}
	byOp := map[string]*OpTime{}
	for _, e := range events {
		d := time.Duration(e.Dur) * time.Microsecond
		switch {
		case e.Cat == "Session" && e.Name == "model_run":
			p.Runs++
			p.Total += d
		case e.Cat == "Node" && e.Args.OpName != "" && strings.HasSuffix(e.Name, "_kernel_time"):
			o := byOp[e.Args.OpName]
			if o == nil {
				o = &OpTime{Op: e.Args.OpName}
				byOp[e.Args.OpName] = o
			}
			o.Calls++
			o.Time += d
		}
	}
	for _, o := range byOp {
		p.Ops = append(p.Ops, *o)
	}
	slices.SortFunc(p.Ops, func(a, b OpTime) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), cmp.Compare(a.Op, b.Op))
	})
	return p, nil
}
