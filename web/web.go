// Package web holds the service's page assets, embedded in the binary (no CDN, works offline).
//
// The page is index.html with style.css and the scripts in dist/, which tsc builds from the
// TypeScript in src/ (`make web`; the built files are committed so that `go build` needs no
// Node.js, and `make test` checks that they match the sources). samples/ holds a few Shapes
// World images for the page's sample picker (made by `go run web/samples/gen.go`).
package web

import (
	"embed"
	"io/fs"
)

// IndexHTML is the page served at /.
//
//go:embed index.html
var IndexHTML []byte

//go:embed style.css dist/*.js samples/*.png samples/samples.json
var files embed.FS

// Assets are the files the page loads, served under /static/: style.css, dist/*.js and
// samples/.
var Assets fs.FS = files
