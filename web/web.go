// Package web holds the service's page assets, embedded in the binary (no CDN, works offline).
package web

import _ "embed"

// IndexHTML is the page served at /.
//
//go:embed index.html
var IndexHTML []byte
