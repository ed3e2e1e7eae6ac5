package pglisten_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/internal/syncbuf"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// within bounds every wait: a failure bound, never a measure.
const within = 10 * time.Second

// recorder is one subscriber: what it was notified of, and how many times
// it was told of a (re)connection.
type recorder struct {
	mu          sync.Mutex
	heard       []string // "channel payload"
	reconnected atomic.Int32
}

func (r *recorder) notify(channel, payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.heard = append(r.heard, channel+" "+payload)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.heard)
}

// subscribe subscribes r to channels on l.
func (r *recorder) subscribe(t *testing.T, l *pglisten.Listener, channels ...string) (unsubscribe func()) {
	t.Helper()
	unsubscribe, err := l.Subscribe(pglisten.Subscription{
		Channels: channels, Notify: r.notify, Reconnected: func() { r.reconnected.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return unsubscribe
}

// start starts l, stopped when the test ends.
func start(t *testing.T, l *pglisten.Listener) {
	t.Helper()
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

// notify sends payload on channel from a pooled connection.
func notify(t *testing.T, st *store.Store, channel, payload string) {
	t.Helper()
	if _, err := st.Writer.Exec("SELECT pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatal(err)
	}
}

// listening are the backend pids of the sessions on st's database whose
// last statement LISTENed on one of this test's channels.
func listening(t *testing.T, st *store.Store) []int {
	t.Helper()
	var pids []int
	if err := st.Writer.Select(&pids, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN pgl\_%' ORDER BY pid`); err != nil {
		t.Fatal(err)
	}
	return pids
}

// twoSubscribers starts a listener on a new database with a subscriber to
// pgl_a and one to pgl_b (and more channels), and waits until both are
// told that it listens.
func twoSubscribers(t *testing.T, more ...string) (st *store.Store, a, b *recorder) {
	t.Helper()
	st = storetest.Postgres(t).Open(t)
	l := pglisten.New(st.Writer.DB, pglisten.Options{})
	a, b = &recorder{}, &recorder{}
	a.subscribe(t, l, "pgl_a")
	b.subscribe(t, l, append([]string{"pgl_b"}, more...)...)
	start(t, l)
	testwait.Until(t, within, "both told", func() bool { return a.reconnected.Load() == 1 && b.reconnected.Load() == 1 })
	return st, a, b
}

// Two subscriptions on one connection: each hears its own channel only,
// in the order sent, after being told the connection listens.
func TestDispatchesEachChannelToItsSubscriber(t *testing.T) {
	t.Parallel()
	st, a, b := twoSubscribers(t, "pgl_c")
	if pids := listening(t, st); len(pids) != 1 {
		t.Fatalf("%d sessions listen, want one for both subscribers", len(pids))
	}
	for i := range 3 {
		notify(t, st, "pgl_a", fmt.Sprint("a", i))
		notify(t, st, "pgl_b", fmt.Sprint("b", i))
	}
	notify(t, st, "pgl_c", "c")
	testwait.Until(t, within, "every notification", func() bool { return len(a.got()) == 3 && len(b.got()) == 4 })
	if got, want := a.got(), []string{"pgl_a a0", "pgl_a a1", "pgl_a a2"}; !slices.Equal(got, want) {
		t.Errorf("a heard %q, want %q", got, want)
	}
	if got, want := b.got(), []string{"pgl_b b0", "pgl_b b1", "pgl_b b2", "pgl_c c"}; !slices.Equal(got, want) {
		t.Errorf("b heard %q, want %q", got, want)
	}
}

// The connection killed by the server: the listener connects again, every
// subscriber is told, and notifications flow as before.
func TestReconnectsAndTellsEverySubscriber(t *testing.T) {
	t.Parallel()
	st, a, b := twoSubscribers(t)
	first := listening(t, st)
	if len(first) != 1 {
		t.Fatalf("%d sessions listen, want 1", len(first))
	}
	var killed bool
	if err := st.Writer.Get(&killed, "SELECT pg_terminate_backend($1)", first[0]); err != nil || !killed {
		t.Fatalf("terminate %d: %v %v", first[0], killed, err)
	}
	testwait.Until(t, within, "both told again", func() bool { return a.reconnected.Load() == 2 && b.reconnected.Load() == 2 })
	testwait.Until(t, within, "one new session listens", func() bool {
		again := listening(t, st)
		return len(again) == 1 && again[0] != first[0]
	})
	notify(t, st, "pgl_a", "after")
	notify(t, st, "pgl_b", "after")
	testwait.Until(t, within, "notifications after the reconnection", func() bool {
		return slices.Equal(a.got(), []string{"pgl_a after"}) && slices.Equal(b.got(), []string{"pgl_b after"})
	})
}

// A subscription made while connected is LISTENed at once and told; one
// ended hears nothing more.
func TestSubscribeWhileConnectedAndUnsubscribe(t *testing.T) {
	t.Parallel()
	st := storetest.Postgres(t).Open(t)
	l := pglisten.New(st.Writer.DB, pglisten.Options{})
	var a, late recorder
	unsubscribeA := a.subscribe(t, l, "pgl_a")
	start(t, l)
	testwait.Until(t, within, "a told", func() bool { return a.reconnected.Load() == 1 })

	late.subscribe(t, l, "pgl_late")
	testwait.Until(t, within, "the late one told", func() bool { return late.reconnected.Load() == 1 })
	notify(t, st, "pgl_late", "1")
	testwait.Until(t, within, "the late one hears", func() bool { return len(late.got()) == 1 })

	unsubscribeA()
	notify(t, st, "pgl_a", "unheard")
	notify(t, st, "pgl_late", "2")
	// Notifications come in order: once the second reached the late
	// subscriber, the one before it was handed out (to nobody).
	testwait.Until(t, within, "the late one hears again", func() bool { return len(late.got()) == 2 })
	if got := a.got(); len(got) != 0 {
		t.Errorf("a heard %q after unsubscribing", got)
	}
	if n := a.reconnected.Load(); n != 1 {
		t.Errorf("a told %d times, want once (the connection was never lost)", n)
	}
	if pids := listening(t, st); len(pids) != 1 {
		t.Errorf("%d sessions listen, want one", len(pids))
	}
}

// Stop closes the connection and returns; Stop again, or without Start,
// does nothing.
func TestStopEndsCleanly(t *testing.T) {
	t.Parallel()
	st := storetest.Postgres(t).Open(t)
	if err := pglisten.New(st.Writer.DB, pglisten.Options{}).Stop(t.Context()); err != nil {
		t.Fatalf("stop without start: %v", err)
	}
	l := pglisten.New(st.Writer.DB, pglisten.Options{})
	var a recorder
	a.subscribe(t, l, "pgl_a")
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, within, "a told", func() bool { return a.reconnected.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	testwait.Until(t, within, "the connection gone", func() bool { return len(listening(t, st)) == 0 })
	if err := l.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

// A channel that would need quoting, or a subscription without Notify,
// is refused.
func TestSubscribeRefusesBadChannels(t *testing.T) {
	t.Parallel()
	l := pglisten.New(nil, pglisten.Options{})
	for _, ch := range []string{"", "Upper", "has space", "semi;colon", "1digit", "quo\"te"} {
		if _, err := l.Subscribe(pglisten.Subscription{Channels: []string{ch}, Notify: func(string, string) {}}); err == nil {
			t.Errorf("channel %q accepted", ch)
		}
	}
	if _, err := l.Subscribe(pglisten.Subscription{Channels: []string{"ok"}}); err == nil {
		t.Error("a subscription without Notify accepted")
	}
}

// An outage is two log lines however many reconnections fail: a warning
// when the connection is lost, a debug line for each failed attempt, and
// one information when it LISTENs again (nothing said so before: the last
// line of an outage was the loss). Notifications flow again after it.
func TestOutageLogsLostOnceAndBackOnce(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	url := storetest.NewDatabase(t, pg.Server)
	st := storetest.Open(t, url)
	var log syncbuf.Buffer
	l := pglisten.New(st.Writer.DB, pglisten.Options{
		Logger:   slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
	})
	var a recorder
	a.subscribe(t, l, "pgl_a")
	start(t, l)
	testwait.Until(t, within, "a told", func() bool { return a.reconnected.Load() == 1 })

	// The database refuses connections and its sessions end: every
	// reconnection fails until restore.
	restore := storetest.Outage(t, pg.Server, url)
	testwait.Until(t, within, "several reconnections to fail", func() bool {
		return strings.Count(log.String(), `msg="PostgreSQL notifications still lost"`) >= 3
	})
	restore()
	testwait.Until(t, within, "a told again", func() bool { return a.reconnected.Load() == 2 })
	testwait.Until(t, within, "the line saying notifications are back", func() bool {
		return strings.Contains(log.String(), `msg="PostgreSQL notifications back"`)
	})
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	var warnings, infos []string
	for _, line := range lines {
		switch {
		case strings.Contains(line, "level=WARN"), strings.Contains(line, "level=ERROR"):
			warnings = append(warnings, line)
		case strings.Contains(line, "level=INFO"):
			infos = append(infos, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `msg="PostgreSQL notifications lost; each part polls until they are back"`) {
		t.Errorf("warnings %q; want one, the loss", warnings)
	}
	if len(infos) != 1 || !strings.Contains(infos[0], `msg="PostgreSQL notifications back" after=`) {
		t.Errorf("information lines %q; want one, notifications back", infos)
	}
	// The pool's connections were ended too: the first statements may
	// fail until it has dropped them all.
	testwait.Until(t, within, "a notification sent after the outage", func() bool {
		_, err := st.Writer.Exec("SELECT pg_notify('pgl_a', 'after')")
		return err == nil
	})
	testwait.Until(t, within, "a notification after the outage", func() bool {
		return slices.Equal(a.got(), []string{"pgl_a after"})
	})
}
