//go:build !race

package e2e

// raceEnabled: these tests run without the race detector, and so does the
// server they build.
const raceEnabled = false
