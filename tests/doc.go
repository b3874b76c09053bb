// Package tests holds the end-to-end tests: they build the real uniter binary once, run it as
// a user would (serve over real HTTP, the match and align commands, configuration from file,
// environment and flags) and pin the import graph that the architecture rules describe.
//
// Every subprocess is killed in a cleanup and every wait is bounded. Run them with
// `go test -race -count=1 ./tests`; they need the ONNX Runtime library (`make ort`).
package tests
