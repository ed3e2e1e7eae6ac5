//go:build !unix

package jobs

// pidAlive cannot look processes up here: it reports every pid alive.
func pidAlive(int) bool { return true }

// pidKnown reports whether pidAlive can tell: not here, so nodes on this
// host are judged by their heartbeat like any other.
func pidKnown() bool { return false }

// procStart cannot tell when a process started here.
func procStart(int) (int64, bool) { return 0, false }

// bootID cannot name this boot here.
func bootID() string { return "" }
