//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// killTTL is the lease's TTL in the kill test.
const killTTL = 2 * time.Second

// leaseHelper is a node that takes the lease on target, says "leading",
// and holds it until it is killed.
func leaseHelper(target string) {
	ctx := context.Background()
	st, err := store.Open(ctx, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	leading := make(chan struct{})
	l, err := cluster.NewLease(st.Writer, st.Dialect, "maintenance", "killed", killTTL, cluster.LeaseOptions{
		OnChange: func(lead bool) {
			if lead {
				close(leading) // once: it never loses the lead before it is killed
			}
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := l.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-leading
	fmt.Println("leading")
	select {}
}

// The leader's process is killed (kill -9: no resignation): another node
// takes over once the dead leader's row expires, not before, and within
// TTL + one renewal period of the kill.
func TestLeaseLeaderKilledIsReplacedAfterExpiry(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		target, st := openTarget(t, b)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envLeaseHelper+"="+target)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "leading\n" {
			t.Fatalf("helper said %q", line)
		}
		var cb changes
		other := newLease(t, st, "b", killTTL, cluster.LeaseOptions{OnChange: cb.record})
		if err := other.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer other.Stop(ctx)
		if h, err := other.Holder(ctx); err != nil || h != "killed" || other.IsLeader() {
			t.Fatalf("holder %q (%v), b leads %v", h, err, other.IsLeader())
		}
		var expires int64
		if err := st.Writer.GetContext(ctx, &expires, st.Rebind("SELECT expires_at FROM cluster_leases WHERE name = ?"), "maintenance"); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		killed := time.Now()
		testwait.Until(t, 3*killTTL, "b takes over", other.IsLeader)
		t.Logf("took over %s after the kill (TTL %s)", time.Since(killed), killTTL)
		// b's row was taken after the dead leader's expiry, on the
		// database's clock.
		var acquired int64
		if err := st.Writer.GetContext(ctx, &acquired, st.Rebind("SELECT acquired_at FROM cluster_leases WHERE name = ?"), "maintenance"); err != nil {
			t.Fatal(err)
		}
		if acquired <= expires || other.Term() != 2 {
			t.Errorf("b took the lease at %d, the dead leader's ran to %d (term %d)", acquired, expires, other.Term())
		}
	})
}
