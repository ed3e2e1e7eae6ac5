//go:build unix

// rlimit.go holds RaiseOpenFileLimit for unix systems.

package events

import "syscall"

// RaiseOpenFileLimit raises this process's soft limit on open files
// (RLIMIT_NOFILE) to its hard limit, since every event-stream client holds
// a socket: ten thousand clients need more than the common default of 1,024.
// It reports the soft limit before and after. Go itself raises the soft
// limit at start-up on most systems, so before is often already the hard
// limit; only a privileged process could go beyond the hard limit, and this
// does not try.
func RaiseOpenFileLimit() (before, after uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	before = uint64(lim.Cur)
	if lim.Cur >= lim.Max {
		return before, before, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return before, before, err
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return before, 0, err
	}
	return before, uint64(lim.Cur), nil
}
