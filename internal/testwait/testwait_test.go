package testwait_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testwait"
)

// Until returns once the condition holds, having looked until it did.
func TestUntilWaitsForTheCondition(t *testing.T) {
	var looks atomic.Int32
	testwait.Until(t, 10*time.Second, "third look", func() bool { return looks.Add(1) >= 3 })
	if n := looks.Load(); n != 3 {
		t.Errorf("looked %d times, want 3", n)
	}
}

// Until fails the test when the condition never holds; checked on a
// recorder so this test itself passes.
func TestUntilFailsAtTheDeadline(t *testing.T) {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testwait.Until(rec, 20*time.Millisecond, "never", func() bool { return false })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Until did not give up")
	}
	if rec.failed != "never: not within 20ms" {
		t.Errorf("failure %q", rec.failed)
	}
}

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
