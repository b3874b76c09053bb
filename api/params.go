package api

import (
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// intField is a numeric request field with its range and its default. Every numeric field of
// the API is read through one of these, so its bound is checked before anything is allocated
// for it, in one place, with the field's API name in the error.
type intField struct {
	name     string
	min, max int
	def      int // for 0 or absent
}

var (
	fieldTopK       = intField{name: "top_k", min: 1, max: 50, def: 5}
	fieldTopLabels  = intField{name: "top_labels", min: 1, max: 50, def: 3}
	fieldTopRegions = intField{name: "top_regions", min: 1, max: 100, def: 3}
	fieldListLimit  = intField{name: "limit", min: 1, max: 1000, def: 50}
)

// resolve checks a decoded value: 0 takes the default.
func (f intField) resolve(v int) (int, error) {
	if v == 0 {
		return f.def, nil
	}
	if v < f.min || v > f.max {
		return 0, badRequest("invalid_"+f.name, "%s: %d is out of range [%d, %d] (0 or absent: %d)", f.name, v, f.min, f.max, f.def)
	}
	return v, nil
}

// parse reads the value of a multipart field or query parameter, which when present must be
// in range (absent is the default).
func (f intField) parse(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n == 0 {
		return 0, badRequest("invalid_"+f.name, "%s: %s is not an integer in [%d, %d]", f.name, quoteInput(s), f.min, f.max)
	}
	return f.resolve(n)
}

// maxEcho bounds how much of a client's input an error message quotes.
const maxEcho = 64

// cut shortens a client's value for an error message to maxEcho bytes.
func cut(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	n := maxEcho
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// quoteInput quotes a client's value for an error message, cut to maxEcho bytes.
func quoteInput(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	c := cut(s)
	i := strings.LastIndex(c, "… (")
	return strconv.Quote(c[:i]) + c[i:]
}

// jsonPath is a JSON decoding error's field path in API names: encoding/json puts the Go
// names of embedded structs in it (SearchOptions.limit), and API fields are lower case.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if r, _ := utf8.DecodeRuneInString(p); !unicode.IsUpper(r) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

// jsonType names a Go type as the JSON a client should send.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}
