//go:build !unix

// rlimit_other.go holds RaiseOpenFileLimit where setrlimit does not exist.

package events

import "errors"

// RaiseOpenFileLimit is a no-op where open-file limits are not set with
// setrlimit; it reports an error saying so.
func RaiseOpenFileLimit() (before, after uint64, err error) {
	return 0, 0, errors.New("raising the open-file limit is not supported on this system")
}
