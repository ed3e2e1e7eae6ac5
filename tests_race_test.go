package main

import (
	"strings"
	"testing"
)

// raceSeparator opens and closes each report the race detector prints.
const raceSeparator = "=================="

// raceReports are the data race reports in a process's stderr, each from
// its opening separator to its closing one. A line that says DATA RACE
// outside the usual frame still counts, with the lines after it.
func raceReports(stderr string) []string {
	var out []string
	rest := stderr
	for {
		i := strings.Index(rest, "DATA RACE")
		if i < 0 {
			return out
		}
		start := strings.LastIndex(rest[:i], raceSeparator)
		if start < 0 {
			start = strings.LastIndex(rest[:i], "\n") + 1
		}
		end := len(rest)
		if j := strings.Index(rest[i:], raceSeparator); j >= 0 {
			end = i + j + len(raceSeparator)
		}
		out = append(out, rest[start:end])
		rest = rest[end:]
	}
}

// failOnDataRace fails the test when a race-built child wrote a data race
// report to its stderr: a race in the server is a bug even when its
// answers looked right, and a SIGKILLed child has no exit code to show it.
func failOnDataRace(t *testing.T, what, stderr string) {
	t.Helper()
	reports := raceReports(stderr)
	if len(reports) == 0 {
		return
	}
	const maxShown = 3
	shown := reports[:min(len(reports), maxShown)]
	t.Errorf("%s: the race detector reported %d data race(s); the first %d:\n%s", what, len(reports), len(shown),
		strings.Join(shown, "\n"))
}
