//go:build unix

package jobs

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// pidAlive reports whether a process with id pid exists on this host.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pidKnown reports whether pidAlive can tell: it can here.
func pidKnown() bool { return true }

// procStart returns when process pid started, in clock ticks after boot
// (field 22 of /proc/<pid>/stat); ok is false where /proc does not tell.
// With the boot id it names one process: a pid, once reused, has another
// start time.
func procStart(pid int) (ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: count the fields after its last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(s[i+1:]) // fields 3 onwards
	const startField = 22 - 3
	if len(fields) <= startField {
		return 0, false
	}
	ticks, err = strconv.ParseInt(fields[startField], 10, 64)
	return ticks, err == nil
}

// bootID names this boot of the machine ("" where the system does not
// tell).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
