package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"
)

// APIVersion is the version of the HTTP API, the OpenAPI document's info.version.
const APIVersion = "1.0.0"

// openAPIYAML is the API's OpenAPI 3.1 document (api/openapi.yaml), the contract that
// docs/api.md describes in prose.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is the document as served at GET /openapi.json, converted once at start.
var openAPIJSON, openAPIErr = yamlToJSON(openAPIYAML, APIVersion)

// OpenAPIYAML is the OpenAPI document as written (api/openapi.yaml).
func OpenAPIYAML() []byte { return bytes.Clone(openAPIYAML) }

// OpenAPIJSON is the OpenAPI document as served at GET /openapi.json: the YAML as JSON, keys
// in the order written, info.version set to APIVersion.
func OpenAPIJSON() ([]byte, error) {
	if openAPIErr != nil {
		return nil, openAPIErr
	}
	return bytes.Clone(openAPIJSON), nil
}

// openAPI serves the document.
func (s *Server) openAPI(c *gin.Context) {
	if openAPIErr != nil {
		s.writeError(c, openAPIErr)
		return
	}
	c.Data(http.StatusOK, "application/json", openAPIJSON)
}

// yamlToJSON converts a YAML document to compact JSON, keeping the order of mapping keys and
// setting info.version to version.
func yamlToJSON(src []byte, version string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("openapi.yaml: not a YAML mapping")
	}
	root := doc.Content[0]
	if info := mapValue(root, "info"); info != nil {
		if v := mapValue(info, "version"); v != nil {
			v.Kind, v.Tag, v.Value, v.Style = yaml.ScalarNode, "!!str", version, 0
		}
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, root, 0); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// mapValue is the value of key in a YAML mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeJSON writes a YAML node as JSON. Aliases are expanded; merge keys, non-string keys and
// values JSON cannot hold (NaN, binary) are errors.
func writeJSON(buf *bytes.Buffer, n *yaml.Node, depth int) error {
	if depth > 100 {
		return errors.New("nested too deep (an alias cycle?)")
	}
	put := func(v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(raw)
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias, depth+1)
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Value == "<<" {
				return fmt.Errorf("line %d: keys must be plain strings", k.Line)
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := put(k.Value); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			return put(n.Value)
		case "!!null":
			buf.WriteString("null")
			return nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return err
			}
			return put(b)
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			return put(i)
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			return put(f)
		}
		return fmt.Errorf("line %d: scalar of tag %s", n.Line, n.ShortTag())
	}
	return fmt.Errorf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
}
