package main

import (
	"reflect"
	"strings"
	"testing"
)

// Every key of Config needs an entry in defaults: without one viper ignores the key's
// environment variable (UNITER_ORT_CUDA_STRICT_PLACEMENT, say) and the field silently keeps its
// zero value instead of the documented default.
func TestEveryConfigKeyHasADefault(t *testing.T) {
	var keys []string
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, prefix string) {
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if name == "" {
				t.Fatalf("field %s%s has no mapstructure tag", prefix, f.Name)
			}
			if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
				walk(f.Type, prefix+name+".")
				continue
			}
			keys = append(keys, prefix+name)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	if len(keys) < 30 {
		t.Fatalf("found %d keys; the walk is broken", len(keys))
	}
	for _, k := range keys {
		if _, ok := defaults[k]; !ok {
			t.Errorf("config key %s has no default", k)
		}
	}
	for k := range defaults {
		found := false
		for _, have := range keys {
			found = found || have == k
		}
		if !found {
			t.Errorf("default %s is not a key of Config", k)
		}
	}
}
