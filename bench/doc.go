// Package bench holds phonehome's benchmark command. It is its own Go
// module, so the peers it compares against (River, backlite) never enter
// the application's go.mod. Run it from this directory with `go run .`;
// it writes its tables into ../BENCHMARKS.md.
package main
