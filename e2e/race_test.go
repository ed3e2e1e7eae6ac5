//go:build race

package e2e

// raceEnabled: these tests run under the race detector, and so does the
// server they build (which also shares the race-built packages in the cache).
const raceEnabled = true
