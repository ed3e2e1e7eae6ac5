package jobs_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/jobs"

	"github.com/phonehome/phonehome/store/storetest"
)

// deadPID returns the id of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a child process: %v", err)
	}
	return cmd.Process.Pid
}

// addNode writes a job_nodes row whose heartbeat is age old at t0.
func (b *bundle) addNode(t *testing.T, name, host string, pid int, age time.Duration) {
	t.Helper()
	if _, err := b.st.Writer.ExecContext(b.ctx,
		b.st.Writer.Rebind("INSERT INTO job_nodes (name, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"),
		name, host, pid, t0.Add(-time.Hour).UnixMilli(), t0.Add(-age).UnixMilli()); err != nil {
		t.Fatal(err)
	}
}

// executingOn makes job id look claimed by node.
func (b *bundle) executingOn(t *testing.T, id int64, node string) {
	t.Helper()
	if _, err := b.st.Writer.ExecContext(b.ctx,
		b.st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_at = ?, attempted_by = ? WHERE id = ?"),
		t0.UnixMilli(), node, id); err != nil {
		t.Fatal(err)
	}
}

// identity is what a node row says of its process beyond the pid.
type identity struct {
	boot  string // boot id; "" for none (NULL)
	start int64  // start time in ticks after boot; 0 for none (NULL)
}

// ownIdentity reads this test process's boot id and start time from /proc,
// as the engine does; it skips the test where /proc does not tell.
func ownIdentity(t *testing.T) identity {
	t.Helper()
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skipf("no boot id: %v", err)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc/self/stat: %v", err)
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	start, err := strconv.ParseInt(fields[22-3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return identity{boot: strings.TrimSpace(string(boot)), start: start}
}

// setIdentity records id in node's row.
func (b *bundle) setIdentity(t *testing.T, node string, id identity) {
	t.Helper()
	if _, err := b.st.Writer.ExecContext(b.ctx, b.st.Writer.Rebind("UPDATE job_nodes SET boot_id = ?, proc_start = ? WHERE name = ?"),
		sql.NullString{String: id.boot, Valid: id.boot != ""}, sql.NullInt64{Int64: id.start, Valid: id.start != 0}, node); err != nil {
		t.Fatal(err)
	}
}

func TestRescueOnlyJobsOfDeadNodes(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true}) // NodeTimeout: the default minute
		host, err := os.Hostname()
		if err != nil {
			t.Skip(err)
		}
		dead := deadPID(t)
		own := ownIdentity(t)
		otherStart := identity{boot: own.boot, start: own.start + 1}
		otherBoot := identity{boot: "00000000-0000-0000-0000-000000000000", start: own.start}
		tests := []struct {
			name        string
			host        string
			pid         int
			age         time.Duration // of the heartbeat
			id          identity
			noRow       bool
			wantRescued bool
		}{
			{name: "no node row", noRow: true, wantRescued: true},
			{name: "other host, stale", host: "elsewhere", pid: 1, age: 2 * time.Minute, wantRescued: true},
			{name: "other host, fresh", host: "elsewhere", pid: 1, age: 30 * time.Second},
			// A live process of ours is never rescued, however old its heartbeat.
			{name: "this host, stale, this very process", host: host, pid: os.Getpid(), age: 2 * time.Minute, id: own},
			{name: "this host, stale, process gone", host: host, pid: dead, age: 2 * time.Minute, wantRescued: true},
			// The process is provably gone: no need to wait for its heartbeat.
			{name: "this host, fresh, process gone", host: host, pid: dead, age: 10 * time.Second, wantRescued: true},
			// The pid lives, but it is another process: after a reboot, or a
			// pid reused.
			{name: "this host, fresh, pid alive, other start time", host: host, pid: os.Getpid(), age: 10 * time.Second,
				id: otherStart, wantRescued: true},
			{name: "this host, fresh, pid alive, other boot", host: host, pid: os.Getpid(), age: 10 * time.Second,
				id: otherBoot, wantRescued: true},
			// Without an identity the heartbeat decides.
			{name: "this host, stale, pid alive, identity unknown", host: host, pid: os.Getpid(), age: 2 * time.Minute,
				wantRescued: true},
			{name: "this host, fresh, pid alive, identity unknown", host: host, pid: os.Getpid(), age: 10 * time.Second},
			{name: "this engine's own node", noRow: true},
		}
		ids := map[string]int64{}
		kept := 0
		for _, tt := range tests {
			node := "node " + tt.name
			if tt.name == "this engine's own node" {
				node = "test-node"
			}
			if !tt.noRow {
				b.addNode(t, node, tt.host, tt.pid, tt.age)
				b.setIdentity(t, node, tt.id)
				if !tt.wantRescued {
					kept++
				}
			}
			ids[tt.name] = b.insert(t, testArgs{Name: tt.name}, jobs.InsertOpts{})
			b.executingOn(t, ids[tt.name], node)
		}
		n, err := b.eng.Rescue(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				j := b.get(t, ids[tt.name])
				if !tt.wantRescued {
					if j.State != jobs.StateExecuting {
						t.Errorf("state %s, want still executing (its node may be alive)", j.State)
					}
					return
				}
				if j.State != jobs.StateRetryable || j.Attempt != 0 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Error, "interrupted") {
					t.Errorf("state %s attempt %d errors %+v, want retryable, attempt given back, one interruption", j.State, j.Attempt, j.Errors)
				}
			})
			if tt.wantRescued {
				want++
			}
		}
		if n != want {
			t.Errorf("Rescue reported %d, want %d", n, want)
		}
		// The dead nodes' rows are gone; the others stay.
		if got := b.count(t, "SELECT count(*) FROM job_nodes"); got != kept {
			t.Errorf("%d node rows left, want %d", got, kept)
		}
	})
}

// TestHeartbeatRecordsTheProcessIdentity: the engine's own row names its
// boot and process start, so that a later engine can tell it from another
// process that got the same pid.
func TestHeartbeatRecordsTheProcessIdentity(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{})
		own := ownIdentity(t)
		var row struct {
			PID   int    `db:"pid"`
			Boot  string `db:"boot_id"`
			Start int64  `db:"proc_start"`
		}
		if err := b.st.Reader.GetContext(b.ctx, &row, "SELECT pid, boot_id, proc_start FROM job_nodes WHERE name = 'test-node'"); err != nil {
			t.Fatal(err)
		}
		if row.PID != os.Getpid() || row.Boot != own.boot || row.Start != own.start {
			t.Errorf("node row %+v, want pid %d boot %s start %d", row, os.Getpid(), own.boot, own.start)
		}
	})
}

func TestRescueRunsWithTheHeartbeat(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{noStart: true, configure: func(c *jobs.Config) {
			c.HeartbeatInterval = 5 * time.Millisecond
			c.NodeTimeout = time.Minute
		}}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error { return nil }})
		id := b.insert(t, testArgs{Name: "left behind"}, jobs.InsertOpts{})
		b.addNode(t, "crashed", "elsewhere", 1, 30*time.Second)
		b.executingOn(t, id, "crashed")
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		// Fresh at start: not rescued however many heartbeats pass.
		b.probePolls(t, "default", 3)
		if j := b.get(t, id); j.State != jobs.StateExecuting {
			t.Fatalf("state %s while its node's heartbeat is fresh, want executing", j.State)
		}
		// A minute on, the heartbeat is stale: a heartbeat rescues it, the
		// queue runs it.
		b.clock.Advance(time.Minute)
		j := b.waitState(t, id, jobs.StateCompleted)
		if j.Attempt != 1 || len(j.Errors) != 1 {
			t.Errorf("attempt %d errors %+v, want attempt 1 after one interruption", j.Attempt, j.Errors)
		}
		// The engine's own heartbeat follows the clock.
		waitFor(t, waitTimeout, func() bool {
			return b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node' AND heartbeat_at = ?", b.clock.Now().UnixMilli()) == 1
		})
	})
}

// TestRescueNeverTakesARunningJob: another node's rescues leave a job alone
// while the node running it lives, even when its heartbeat looks stale
// (same host, live process), so it never runs twice.
func TestRescueNeverTakesARunningJob(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		w := newGateWorker()
		var calls int
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{configure: func(c *jobs.Config) { c.Node = "node-a" }}, w)
		other := newEngine(t, st, clock, options{configure: func(c *jobs.Config) { c.Node = "node-b" }}, w)
		id := b.insert(t, testArgs{Name: "long"}, jobs.InsertOpts{})
		<-w.started
		calls++
		for _, advance := range []time.Duration{0, time.Hour} {
			clock.Advance(advance)
			for range 3 {
				if n, err := other.Rescue(b.ctx); err != nil || n != 0 {
					t.Fatalf("rescue by another node (clock +%s): n=%d err=%v, want 0", advance, n, err)
				}
			}
			if j := b.get(t, id); j.State != jobs.StateExecuting || len(j.Errors) != 0 {
				t.Fatalf("state %s errors %+v, want executing", j.State, j.Errors)
			}
		}
		close(w.release)
		j := b.waitState(t, id, jobs.StateCompleted)
		calls += len(w.started)
		if calls != 1 || j.Attempt != 1 {
			t.Errorf("worker ran %d times, attempt %d; want once", calls, j.Attempt)
		}
	})
}

func TestStopRemovesNodeRow(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		b := setup(t, be, options{})
		if n := b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node' AND pid = ?", os.Getpid()); n != 1 {
			t.Fatalf("%d node rows after Start, want 1", n)
		}
		if err := b.eng.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, "SELECT count(*) FROM job_nodes"); n != 0 {
			t.Errorf("%d node rows after a clean Stop, want 0", n)
		}
	})
}

func TestStopLeavingAJobKeepsNodeRow(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		release := make(chan struct{})
		started := make(chan struct{})
		b := setup(t, be, options{}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			close(started)
			<-release // ignores ctx
			return nil
		}})
		defer close(release)
		b.insert(t, testArgs{Name: "deaf"}, jobs.InsertOpts{})
		<-started
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.eng.Stop(ended); err == nil {
			t.Fatal("Stop returned nil with a job left running")
		}
		if n := b.count(t, "SELECT count(*) FROM job_nodes WHERE name = 'test-node'"); n != 1 {
			t.Errorf("%d node rows, want 1: its job may still run, so its heartbeat must go stale before a rescue", n)
		}
	})
}

func TestRescueAfterCrash(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		st := be.Open(t)
		clock := newFakeClock()
		crashed := newEngine(t, st, clock, options{noStart: true})
		res, err := crashed.Insert(t.Context(), testArgs{Name: "interrupted"}, jobs.InsertOpts{})
		if err != nil {
			t.Fatal(err)
		}
		// What a claim does, in a process that then dies.
		if _, err := st.Writer.ExecContext(t.Context(),
			st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = 1, attempted_at = ?, attempted_by = 'crashed-node/1' WHERE id = ?"),
			t0.UnixMilli(), res.ID); err != nil {
			t.Fatal(err)
		}

		seen := make(chan int, 10)
		b := &bundle{ctx: t.Context(), st: st, clock: clock}
		b.eng = newEngine(t, st, clock, options{}, funcWorker{kind: "test", fn: func(_ context.Context, j *jobs.Job) error {
			seen <- j.Attempt
			return nil
		}})

		j := b.waitState(t, res.ID, jobs.StateCompleted)
		if got := <-seen; got != 1 {
			t.Errorf("the rescued job ran as attempt %d, want 1 (the interrupted attempt is not counted)", got)
		}
		if j.Attempt != 1 {
			t.Errorf("attempt = %d, want 1", j.Attempt)
		}
		if len(j.Errors) != 1 {
			t.Fatalf("errors = %+v, want one interruption", j.Errors)
		}
		if e := j.Errors[0]; e.Attempt != 1 || !strings.Contains(e.Error, "interrupted") || !strings.Contains(e.Error, "crashed-node/1") {
			t.Errorf("errors[0] = %+v, want attempt 1 interrupted on crashed-node/1", e)
		}
		if n := b.count(t, "SELECT rescues FROM jobs WHERE id = ?", res.ID); n != 1 {
			t.Errorf("rescues = %d, want 1", n)
		}
	})
}

func TestRescueDiscardsAfterMaxRescues(t *testing.T) {
	bothBackends(t, func(t *testing.T, be storetest.Backend) {
		var calls atomic.Int32
		b := setup(t, be, options{noStart: true}, funcWorker{kind: "test", fn: func(context.Context, *jobs.Job) error {
			calls.Add(1)
			return nil
		}})
		id := b.insert(t, testArgs{Name: "crashes the process"}, jobs.InsertOpts{})

		for i := 1; i <= jobs.MaxRescues; i++ {
			if _, err := b.st.Writer.ExecContext(b.ctx,
				b.st.Writer.Rebind("UPDATE jobs SET state = 'executing', attempt = attempt + 1, attempted_by = 'crashed' WHERE id = ?"), id); err != nil {
				t.Fatal(err)
			}
			n, err := b.eng.Rescue(b.ctx)
			if err != nil || n != 1 {
				t.Fatalf("rescue %d: n=%d err=%v, want 1 job", i, n, err)
			}
			j := b.get(t, id)
			if got := b.count(t, "SELECT rescues FROM jobs WHERE id = ?", id); got != i {
				t.Errorf("rescue %d: rescues = %d", i, got)
			}
			if len(j.Errors) != i || !strings.Contains(j.Errors[i-1].Error, "interrupted") {
				t.Errorf("rescue %d: errors = %+v, want %d interruptions", i, j.Errors, i)
			}
			if i < jobs.MaxRescues {
				if j.State != jobs.StateRetryable || j.Attempt != 0 || j.DiscardedAt != nil || !j.ScheduledAt.Equal(t0) {
					t.Errorf("rescue %d: state %s attempt %d discarded_at %v scheduled_at %v, want retryable attempt 0 due now",
						i, j.State, j.Attempt, j.DiscardedAt, j.ScheduledAt)
				}
				continue
			}
			if j.State != jobs.StateDiscarded || !sameTime(j.DiscardedAt, t0) || j.Attempt != 1 {
				t.Errorf("rescue %d: state %s attempt %d discarded_at %v, want discarded at %v keeping attempt 1",
					i, j.State, j.Attempt, j.DiscardedAt, t0)
			}
		}
		if n, err := b.eng.Rescue(b.ctx); err != nil || n != 0 {
			t.Errorf("rescue with nothing executing: n=%d err=%v", n, err)
		}

		// Started now, the engine does not run the discarded job.
		if err := b.eng.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		b.probePolls(t, "default", 2)
		if n := calls.Load(); n != 0 {
			t.Errorf("the discarded job ran %d times", n)
		}
	})
}
