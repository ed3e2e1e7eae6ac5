//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/phonehome/phonehome/cluster"
)

// envLockHelper makes the test binary a helper process that takes the
// SQLite lock of the path it names (see TestMain).
const envLockHelper = "PHONEHOME_CLUSTER_LOCK_HELPER"

// envLeaseHelper makes the test binary a node that holds the lease on
// the database it names (see leaseHelper).
const envLeaseHelper = "PHONEHOME_CLUSTER_LEASE_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(envLockHelper); path != "" {
		lockHelper(path)
		return
	}
	if target := os.Getenv(envLeaseHelper); target != "" {
		leaseHelper(target)
		return
	}
	os.Exit(m.Run())
}

// lockHelper takes the lock as the app's serve would: on success it says
// "locked" and holds the lock until its standard input closes (or it is
// killed); refused, it prints the one-line message and exits 1.
func lockHelper(path string) {
	release, err := cluster.LockSQLite(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = release()
	os.Exit(0)
}

// helper is a lock-holding helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	stderr *strings.Builder
}

// startHelper runs the test binary as a helper on path and waits for it to
// hold the lock (wantLocked) or to be refused.
func startHelper(t *testing.T, path string, wantLocked bool) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envLockHelper+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, stderr: &stderr}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The first line comes once the helper decided; a refused helper
	// closes stdout without one. Reading blocks on the helper alone, and
	// the test's own timeout bounds it.
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if locked := line == "locked\n"; locked != wantLocked {
		cmd.Wait()
		t.Fatalf("helper locked %v, want %v (stderr %q)", locked, wantLocked, stderr.String())
	}
	return h
}

// Two processes on one SQLite file: the second is refused with one line
// that names the first and says to use PostgreSQL. The kernel drops the
// lock of a holder killed with kill -9, and the next start succeeds.
func TestLockSQLiteRefusesASecondProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "phonehome.db")
	holder := startHelper(t, path, true)
	pid := holder.cmd.Process.Pid

	// This process is refused, naming the holder.
	_, err := cluster.LockSQLite(path)
	if !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("pid %d", pid)) || !strings.Contains(msg, "PostgreSQL") ||
		!strings.Contains(msg, path) || strings.Contains(msg, "\n") {
		t.Errorf("message %q: want one line naming pid %d, the file, and PostgreSQL", msg, pid)
	}
	// So is another process, which exits non-zero with that line.
	refused := startHelper(t, path, false)
	if err := refused.cmd.Wait(); err == nil {
		t.Error("a refused process exited 0")
	}
	if got := strings.TrimSpace(refused.stderr.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, fmt.Sprintf("pid %d", pid)) {
		t.Errorf("refused process said %q", got)
	}

	// kill -9: nothing runs at exit, the kernel alone drops the lock.
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.cmd.Wait()
	release, err := cluster.LockSQLite(path)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	if got, _ := os.ReadFile(cluster.LockFile(path)); !strings.Contains(string(got), fmt.Sprintf("pid %d ", os.Getpid())) {
		t.Errorf("lock file says %q, want this process", got)
	}
	// A clean release lets the next process in.
	if err := release(); err != nil {
		t.Fatal(err)
	}
	next := startHelper(t, path, true)
	next.stdin.Close()
	if err := next.cmd.Wait(); err != nil {
		t.Fatalf("helper after a release: %v (%s)", err, next.stderr.String())
	}
}

// flock belongs to an open file description: a second LockSQLite in the
// same process is refused too, and a release lets it in.
func TestLockSQLiteRefusesTheSameProcessTwice(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "phonehome.db")
	release, err := cluster.LockSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.LockSQLite(path)
	if !errors.Is(err, cluster.ErrLocked) {
		t.Fatalf("second lock in one process: %v", err)
	}
	// The refusal names the file and the holder apart, for commands that
	// say what to do in their own words.
	var locked *cluster.LockedError
	if !errors.As(err, &locked) || locked.Path != path || !strings.HasPrefix(locked.Holder, fmt.Sprintf("pid %d on ", os.Getpid())) {
		t.Errorf("refusal %#v: want a LockedError naming %s and pid %d", locked, path, os.Getpid())
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	again, err := cluster.LockSQLite(path)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
	// A folder that does not exist is an error, not a silent pass.
	if _, err := cluster.LockSQLite(filepath.Join(t.TempDir(), "missing", "x.db")); err == nil || errors.Is(err, cluster.ErrLocked) {
		t.Errorf("lock in a missing folder: %v", err)
	}
}
