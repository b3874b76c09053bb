package detector

import (
	"encoding/json"
	"testing"
)

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(readTestdata(t, name), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
