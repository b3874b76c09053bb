package api_test

// The page's TypeScript (web/src/*.ts) copies the wire types it reads by hand. TestTSWireTypes
// checks each copy against the OpenAPI document's schema: every field the page declares exists
// in the schema, a field the page takes as always present is required there, and the types
// agree (number for integer and number, string literal unions for enums, tuples for arrays of a
// fixed length, Record<K, V> for maps and for objects whose properties all are V). The page may
// declare fewer fields than the schema has: it reads only those.
//
// The parser below reads the declarations this page writes (interfaces of fields, type
// aliases; arrays, tuples, object literals, unions, Record<K, V>) and fails on anything else.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
)

// tsWireTypes maps the page's wire types to the schemas they copy.
var tsWireTypes = map[string]string{
	// web/src/api.ts
	"LabelProb": "LabelProb", "Token": "Token", "Region": "Region", "ImageInfo": "ImageInfo",
	"MatchResult": "MatchResult", "Timings": "Timings", "MatchResponse": "MatchResponse",
	"PatternName": "PatternName", "AttentionMeasures": "AttentionMeasures", "HeadAttention": "HeadAttention",
	"PatternThresholds": "PatternThresholds", "AttentionJSON": "AttentionJSON", "AlignResponse": "AlignResponse",
	"TokenPrediction": "TokenPrediction", "MaskPrediction": "MaskPrediction", "FillMaskResponse": "FillMaskResponse",
	"DetectorInfo": "DetectorInfo", "ModelInfo": "ModelInfo", "ModelsResponse": "ModelsResponse",
	"UnknownWord": "UnknownWord", "VocabularyInfo": "VocabularyInfo",
	"TaskText": "TaskText", "VQAResponse": "VQAResponse", "EntailmentResponse": "EntailmentResponse",
	"NLVR2Response": "NLVR2Response", "ReferResponse": "ReferResponse",
	// web/src/search.ts
	"RegionEvidence": "RegionEvidence", "WordEvidence": "WordEvidence", "Hit": "SearchHit",
	"SearchResponse": "SearchResponse", "GalleryImage": "GalleryImage", "GalleryStatus": "GalleryStatus",
	"DemoStatus": "DemoStatus",
}

// tsPageTypes are the page's own types, no wire type's copy.
var tsPageTypes = map[string]string{
	"Attrs":        "dom.ts: element attributes",
	"AlignBy":      "align.ts: which alignment the page shows",
	"Word":         "probe.ts: a caption word, computed from tokens",
	"RegionEvents": "regions.ts: callbacks",
	"Sample":       "main.ts: web/samples/samples.json, no API answer",
	"SampleTasks":  "main.ts: a sample's task items in web/samples/samples.json, no API answer",
}

func TestTSWireTypes(t *testing.T) {
	v := loadSpec(t)
	files, err := filepath.Glob(filepath.Join("..", "web", "src", "*.ts"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no web/src/*.ts (%v)", err)
	}
	decls := map[string]tsDecl{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found, err := tsDeclarations(string(src))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, d := range found {
			d.file = filepath.Base(f)
			if prev, ok := decls[d.name]; ok {
				t.Fatalf("%s declared in %s and %s: give them distinct names", d.name, prev.file, d.file)
			}
			decls[d.name] = d
		}
	}
	names := sortedKeys(decls)
	for _, name := range names {
		_, wire := tsWireTypes[name]
		_, page := tsPageTypes[name]
		if !wire && !page {
			t.Errorf("%s (%s) is neither in tsWireTypes (a copy of a wire type, checked against its schema) nor in tsPageTypes", name, decls[name].file)
		}
	}
	for _, name := range sortedKeys(tsWireTypes) {
		if _, ok := decls[name]; !ok {
			t.Errorf("tsWireTypes lists %s, which web/src does not declare", name)
		}
	}
	c := &tsChecker{decls: decls}
	for _, name := range names {
		schemaName, ok := tsWireTypes[name]
		if !ok {
			continue
		}
		d := decls[name]
		typ, err := d.parse()
		if err != nil {
			t.Errorf("%s (%s): %v", name, d.file, err)
			continue
		}
		s := v.Schema(schemaName)
		if s == nil {
			t.Errorf("%s (%s): no schema %s in api/openapi.yaml", name, d.file, schemaName)
			continue
		}
		for _, problem := range c.compare(typ, s, name, 0) {
			t.Errorf("%s (%s) vs schema %s: %s", name, d.file, schemaName, problem)
		}
	}
}

// ---- Declarations ---------------------------------------------------------------------------

type tsDecl struct {
	name, file string
	kind       string // "interface" or "type"
	body       string // the interface's {…} or the alias's type, comments removed
}

func (d tsDecl) parse() (*tsType, error) {
	p := &tsParser{toks: tsTokens(d.body)}
	typ, err := p.parseType()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, fmt.Errorf("cannot read %q after the type", p.rest())
	}
	return typ, nil
}

var tsDeclRe = regexp.MustCompile(`(?m)^(?:export\s+)?(interface|type)\s+([A-Za-z_]\w*)\b`)

// tsDeclarations finds the top-level interface and type declarations of a file.
func tsDeclarations(src string) ([]tsDecl, error) {
	src = stripTSComments(src)
	var out []tsDecl
	for _, m := range tsDeclRe.FindAllStringSubmatchIndex(src, -1) {
		kind, name := src[m[2]:m[3]], src[m[4]:m[5]]
		rest := src[m[1]:]
		if strings.HasPrefix(strings.TrimSpace(rest), "<") {
			return nil, fmt.Errorf("%s %s: generic declarations are not read here", kind, name)
		}
		switch kind {
		case "interface":
			open := strings.Index(rest, "{")
			if open < 0 || strings.TrimSpace(rest[:open]) != "" {
				return nil, fmt.Errorf("interface %s: want `interface %s {` (no extends)", name, name)
			}
			end, err := matchBrace(rest, open)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %v", name, err)
			}
			out = append(out, tsDecl{name: name, kind: kind, body: rest[open : end+1]})
		case "type":
			eq := strings.Index(rest, "=")
			semi := strings.Index(rest, ";")
			if eq < 0 || semi < eq || strings.TrimSpace(rest[:eq]) != "" {
				return nil, fmt.Errorf("type %s: want `type %s = …;`", name, name)
			}
			out = append(out, tsDecl{name: name, kind: kind, body: rest[eq+1 : semi]})
		}
	}
	return out, nil
}

// stripTSComments removes // and /* */ comments outside string literals.
func stripTSComments(src string) string {
	var b strings.Builder
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			b.WriteString(src[i:min(j+1, len(src))])
			i = j
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return b.String()
			}
			i += 2 + end + 1
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func matchBrace(s string, open int) (int, error) {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("no closing brace")
}

// ---- Types ----------------------------------------------------------------------------------

// tsType is a parsed TypeScript type.
type tsType struct {
	kind   string    // "prim", "lit", "ref", "array", "tuple", "object", "union", "record"
	name   string    // prim: string, number, boolean, unknown, any, undefined, null; ref: the name; lit: the value
	elem   *tsType   // array
	elems  []*tsType // tuple, union; record: key, value
	fields []tsField // object
}

type tsField struct {
	name     string
	optional bool
	typ      *tsType
}

func (t *tsType) String() string {
	switch t.kind {
	case "prim", "ref":
		return t.name
	case "lit":
		return strconv.Quote(t.name)
	case "array":
		return t.elem.String() + "[]"
	case "tuple", "union":
		var parts []string
		for _, e := range t.elems {
			parts = append(parts, e.String())
		}
		if t.kind == "tuple" {
			return "[" + strings.Join(parts, ", ") + "]"
		}
		return strings.Join(parts, " | ")
	case "record":
		return "Record<" + t.elems[0].String() + ", " + t.elems[1].String() + ">"
	}
	return "{…}"
}

func tsTokens(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && rune(s[j]) != c {
				j++
			}
			toks = append(toks, s[i:min(j+1, len(s))])
			i = j + 1
		case c == '_' || c == '$' || unicode.IsLetter(c) || unicode.IsDigit(c):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			toks = append(toks, string(c))
			i++
		}
	}
	return toks
}

type tsParser struct {
	toks []string
	pos  int
}

func (p *tsParser) done() bool   { return p.pos >= len(p.toks) }
func (p *tsParser) peek() string { return p.at(0) }
func (p *tsParser) at(k int) string {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k]
	}
	return ""
}
func (p *tsParser) rest() string { return strings.Join(p.toks[p.pos:], " ") }
func (p *tsParser) next() string {
	t := p.peek()
	p.pos++
	return t
}
func (p *tsParser) expect(tok string) error {
	if got := p.next(); got != tok {
		return fmt.Errorf("want %q, got %q before %q", tok, got, p.rest())
	}
	return nil
}

func (p *tsParser) parseType() (*tsType, error) {
	if p.peek() == "|" { // a leading bar
		p.next()
	}
	first, err := p.parsePostfix()
	if err != nil {
		return nil, err
	}
	if p.peek() != "|" {
		return first, nil
	}
	u := &tsType{kind: "union", elems: []*tsType{first}}
	for p.peek() == "|" {
		p.next()
		e, err := p.parsePostfix()
		if err != nil {
			return nil, err
		}
		u.elems = append(u.elems, e)
	}
	return u, nil
}

func (p *tsParser) parsePostfix() (*tsType, error) {
	t, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for p.peek() == "[" && p.at(1) == "]" {
		p.pos += 2
		t = &tsType{kind: "array", elem: t}
	}
	return t, nil
}

func (p *tsParser) parsePrimary() (*tsType, error) {
	tok := p.next()
	switch {
	case tok == "":
		return nil, fmt.Errorf("a type is missing")
	case tok == "(":
		t, err := p.parseType()
		if err != nil {
			return nil, err
		}
		return t, p.expect(")")
	case tok[0] == '"' || tok[0] == '\'':
		return &tsType{kind: "lit", name: strings.Trim(tok, `"'`)}, nil
	case tok == "[":
		t := &tsType{kind: "tuple"}
		for p.peek() != "]" {
			e, err := p.parseType()
			if err != nil {
				return nil, err
			}
			t.elems = append(t.elems, e)
			if p.peek() == "," {
				p.next()
			}
		}
		p.next()
		return t, nil
	case tok == "{":
		return p.parseObject()
	case slices.Contains([]string{"string", "number", "boolean", "unknown", "any", "undefined", "null"}, tok):
		return &tsType{kind: "prim", name: tok}, nil
	case tok == "Record":
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		k, err := p.parseType()
		if err != nil {
			return nil, err
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
		v, err := p.parseType()
		if err != nil {
			return nil, err
		}
		return &tsType{kind: "record", elems: []*tsType{k, v}}, p.expect(">")
	case unicode.IsUpper(rune(tok[0])):
		if p.peek() == "<" {
			return nil, fmt.Errorf("generic type %s<…> is not read here", tok)
		}
		return &tsType{kind: "ref", name: tok}, nil
	}
	return nil, fmt.Errorf("cannot read a type at %q", tok+" "+p.rest())
}

func (p *tsParser) parseObject() (*tsType, error) {
	t := &tsType{kind: "object"}
	for {
		switch p.peek() {
		case "}":
			p.next()
			return t, nil
		case ";", ",":
			p.next()
			continue
		case "readonly":
			p.next()
		}
		name := p.next()
		if name == "" || !(unicode.IsLetter(rune(name[0])) || name[0] == '_') {
			return nil, fmt.Errorf("want a field name, got %q before %q", name, p.rest())
		}
		f := tsField{name: name}
		if p.peek() == "?" {
			p.next()
			f.optional = true
		}
		if p.peek() == "(" {
			return nil, fmt.Errorf("field %s: methods are not read here", name)
		}
		if err := p.expect(":"); err != nil {
			return nil, fmt.Errorf("field %s: %v", name, err)
		}
		typ, err := p.parseType()
		if err != nil {
			return nil, fmt.Errorf("field %s: %v", name, err)
		}
		f.typ = typ
		t.fields = append(t.fields, f)
	}
}

// ---- Comparison -----------------------------------------------------------------------------

type tsChecker struct {
	decls map[string]tsDecl
}

// resolve follows references to declared types.
func (c *tsChecker) resolve(t *tsType) (*tsType, error) {
	for seen := 0; t.kind == "ref"; seen++ {
		d, ok := c.decls[t.name]
		if !ok || seen > 20 {
			return nil, fmt.Errorf("type %s is not declared in web/src", t.name)
		}
		var err error
		if t, err = d.parse(); err != nil {
			return nil, fmt.Errorf("%s: %v", d.name, err)
		}
	}
	return t, nil
}

func schemaIs(s *openapi3.Schema, typ string) bool {
	if s.Type != nil && s.Type.Includes(typ) {
		return true
	}
	if s.Const != nil {
		switch s.Const.(type) {
		case string:
			return typ == "string"
		case bool:
			return typ == "boolean"
		case float64, int, int64:
			return typ == "number" || typ == "integer"
		}
	}
	return false
}

func schemaDesc(s *openapi3.Schema) string {
	switch {
	case s.Type != nil:
		return strings.Join(s.Type.Slice(), "|")
	case s.Const != nil:
		return fmt.Sprintf("const %v", s.Const)
	}
	return "any"
}

// compare lists where the TypeScript type disagrees with the schema.
func (c *tsChecker) compare(t *tsType, s *openapi3.Schema, path string, depth int) []string {
	if depth > 30 {
		return []string{path + ": nested too deep"}
	}
	t, err := c.resolve(t)
	if err != nil {
		return []string{path + ": " + err.Error()}
	}
	bad := func(format string, a ...any) []string {
		return []string{path + ": " + fmt.Sprintf(format, a...)}
	}
	switch t.kind {
	case "prim":
		switch t.name {
		case "unknown", "any":
			return nil
		case "number":
			if schemaIs(s, "number") || schemaIs(s, "integer") {
				return nil
			}
		case "string", "boolean":
			if schemaIs(s, t.name) {
				return nil
			}
		}
		return bad("the page says %s, the document %s", t.name, schemaDesc(s))
	case "lit":
		return c.compareLiterals([]string{t.name}, s, path)
	case "union":
		var lits []string
		var rest []*tsType
		for _, e := range t.elems {
			e, err := c.resolve(e)
			if err != nil {
				return bad("%v", err)
			}
			switch {
			case e.kind == "lit":
				lits = append(lits, e.name)
			case e.kind == "prim" && e.name == "undefined":
			default:
				rest = append(rest, e)
			}
		}
		switch {
		case len(lits) > 0 && len(rest) == 0:
			return c.compareLiterals(lits, s, path)
		case len(lits) == 0 && len(rest) == 1:
			return c.compare(rest[0], s, path, depth+1)
		}
		return bad("the union %s is not compared here", t)
	case "array", "tuple":
		if !schemaIs(s, "array") {
			return bad("the page says %s, the document %s", t, schemaDesc(s))
		}
		if s.Items == nil || s.Items.Value == nil {
			return bad("the document's array has no items schema")
		}
		if t.kind == "array" {
			return c.compare(t.elem, s.Items.Value, path+"[]", depth+1)
		}
		n := uint64(len(t.elems))
		if s.MaxItems == nil || *s.MaxItems != n || s.MinItems != n {
			return bad("the page says a tuple of %d, the document minItems %d maxItems %v", n, s.MinItems, s.MaxItems)
		}
		var out []string
		for i, e := range t.elems {
			out = append(out, c.compare(e, s.Items.Value, fmt.Sprintf("%s[%d]", path, i), depth+1)...)
		}
		return out
	case "record":
		if !schemaIs(s, "object") {
			return bad("the page says %s, the document %s", t, schemaDesc(s))
		}
		key, err := c.resolve(t.elems[0])
		if err != nil {
			return bad("%v", err)
		}
		var out []string
		if key.kind == "prim" && key.name == "string" {
			// Every value, named or not, is of the record's value type.
			for _, name := range sortedKeys(s.Properties) {
				out = append(out, c.compare(t.elems[1], s.Properties[name].Value, path+"."+name, depth+1)...)
			}
			if ap := s.AdditionalProperties.Schema; ap != nil && ap.Value != nil {
				out = append(out, c.compare(t.elems[1], ap.Value, path+".*", depth+1)...)
			} else if len(s.Properties) == 0 {
				out = append(out, path+": the page reads a map, the document lists no values")
			}
			return out
		}
		keys, err := c.literals(key)
		if err != nil {
			return bad("record key: %v", err)
		}
		for _, k := range keys {
			p := s.Properties[k]
			if p == nil || !slices.Contains(s.Required, k) {
				out = append(out, fmt.Sprintf("%s: the page expects key %q always, the document does not require it", path, k))
				continue
			}
			out = append(out, c.compare(t.elems[1], p.Value, path+"."+k, depth+1)...)
		}
		return out
	case "object":
		if !schemaIs(s, "object") {
			return bad("the page says an object, the document %s", schemaDesc(s))
		}
		var out []string
		for _, f := range t.fields {
			p := s.Properties[f.name]
			if p == nil || p.Value == nil {
				out = append(out, fmt.Sprintf("%s.%s: the document has no such field", path, f.name))
				continue
			}
			if !f.optional && !slices.Contains(s.Required, f.name) {
				out = append(out, fmt.Sprintf("%s.%s: the page takes it as always present, the document does not require it (write %s?)", path, f.name, f.name))
			}
			out = append(out, c.compare(f.typ, p.Value, path+"."+f.name, depth+1)...)
		}
		return out
	}
	return bad("cannot compare %s", t)
}

func (c *tsChecker) literals(t *tsType) ([]string, error) {
	switch t.kind {
	case "lit":
		return []string{t.name}, nil
	case "union":
		var out []string
		for _, e := range t.elems {
			e, err := c.resolve(e)
			if err != nil {
				return nil, err
			}
			if e.kind != "lit" {
				return nil, fmt.Errorf("%s is not a union of string literals", t)
			}
			out = append(out, e.name)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not a string literal type", t)
}

// compareLiterals: the page's string literals must be the document's enum (or const), exactly.
func (c *tsChecker) compareLiterals(lits []string, s *openapi3.Schema, path string) []string {
	var want []string
	for _, e := range s.Enum {
		str, ok := e.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: the document's enum holds %v, not strings", path, e)}
		}
		want = append(want, str)
	}
	if str, ok := s.Const.(string); ok {
		want = append(want, str)
	}
	if len(want) == 0 {
		return []string{fmt.Sprintf("%s: the page lists the values %q, the document any %s", path, lits, schemaDesc(s))}
	}
	sort.Strings(want)
	got := slices.Clone(lits)
	sort.Strings(got)
	if !slices.Equal(got, slices.Compact(want)) {
		return []string{fmt.Sprintf("%s: the page lists %q, the document %q", path, got, want)}
	}
	return nil
}

// TestTSWireTypesRejects: the comparison is not vacuous.
func TestTSWireTypesRejects(t *testing.T) {
	v := loadSpec(t)
	decls, err := tsDeclarations(`
// a comment
export interface Bad {
  text: string; score: string; nope?: number; image: ImageInfo;
  /** tuples and literals */
  box?: [number, number]; mode?: "a" | "b";
}
export interface ImageInfo { sha256: string; format: "png" | "jpeg"; }
`)
	if err != nil {
		t.Fatal(err)
	}
	c := &tsChecker{decls: map[string]tsDecl{}}
	for _, d := range decls {
		c.decls[d.name] = d
	}
	typ, err := c.decls["Bad"].parse()
	if err != nil {
		t.Fatal(err)
	}
	problems := c.compare(typ, v.Schema("MatchResult"), "Bad", 0)
	for _, want := range []string{"Bad.score: the page says string", "Bad.nope: the document has no such field", "Bad.image: the document has no such field"} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("no problem %q in %q", want, problems)
		}
	}
	typ, _ = c.decls["ImageInfo"].parse()
	problems = c.compare(typ, v.Schema("ImageInfo"), "ImageInfo", 0)
	if len(problems) != 1 || !strings.Contains(problems[0], "ImageInfo.format: the page lists") {
		t.Errorf("ImageInfo: problems %q, want the format's values", problems)
	}
	typ, _ = c.decls["Bad"].parse()
	problems = c.compare(typ, v.Schema("SearchHit"), "Bad", 0)
	if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "Bad.text: the page takes it as always present") }) {
		t.Errorf("SearchHit: problems %q, want text's optionality", problems)
	}
	if _, err := tsDeclarations("interface G<T> { x: T }"); err == nil {
		t.Error("a generic interface was read")
	}
	if _, err := (tsDecl{name: "M", body: "{ f(x: number): void; }"}).parse(); err == nil {
		t.Error("a method was read as a field")
	}
}
