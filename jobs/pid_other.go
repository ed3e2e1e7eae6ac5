//go:build !unix

package jobs

// pidAlive cannot look processes up here: it reports every pid alive, so
// jobs of nodes on this host are rescued only by a restart with the same
// Node name.
func pidAlive(int) bool { return true }
