// Package testwait is the one wait-until loop the tests share: poll a
// condition until it holds, failing the test at a deadline. The deadline is
// only ever a failure bound; nothing passes or fails on how fast a thing
// happened, and nothing sleeps in the hope that it has.
package testwait

import (
	"testing"
	"time"
)

// poll is how long Until sleeps between looks: the shorter of the two the
// copies it replaced used, so no wait got longer.
const poll = 2 * time.Millisecond

// Until polls cond until it holds, failing t when it is still false after
// within; what names the condition in the failure.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(poll)
	}
}
