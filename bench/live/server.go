package live

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/internal/benchdb"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	applive "github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// server is the app's wiring, as app.go builds it, on 127.0.0.1:0.
type server struct {
	st     *store.Store
	hub    *events.Hub
	feed   *applive.ExtraterrestrialFeed
	engine *jobs.Engine
	http   *http.Server
	port   int
	url    string
	// gap, when set, records how long after the worker's OnCall (right
	// after the commit) the row's event got its id.
	gap *histogram
}

// startServer serves db. onCall, when set, sees every committed call before
// the feed publishes it; the engine is built but not started.
func startServer(ctx context.Context, db string, answerRate float64, backoff time.Duration, onCall func(store.Extraterrestrial)) (*server, error) {
	return startServerFlush(ctx, db, answerRate, backoff, onCall, flushEvery)
}

// runEngine runs the server's engine for d (less if ctx ends first), then
// stops it.
func (s *server) runEngine(ctx context.Context, d time.Duration) error {
	if err := s.engine.Start(ctx); err != nil {
		return err
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	_ = s.engine.Stop(context.Background())
	return nil
}

// flushEvery is Options.FlushEvery of the running benchmark.
var flushEvery time.Duration

func startServerFlush(ctx context.Context, db string, answerRate float64, backoff time.Duration, onCall func(store.Extraterrestrial), flush time.Duration) (*server, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := benchdb.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	v, err := views.New()
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &server{st: st}
	s.hub = events.New(events.Config{FlushEvery: flush})
	applive.Register(s.hub)
	s.feed = applive.NewExtraterrestrialFeed(st, v, s.hub, logger, 250*time.Millisecond)
	if err := s.feed.Start(ctx); err != nil {
		s.close()
		return nil, err
	}
	s.engine, err = jobs.New(st.Writer, jobs.Config{
		Queues:  map[string]int{speakandspell.Queue: speakandspell.QueueLimit},
		Backoff: jobs.FixedBackoff(backoff),
		Logger:  logger,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	changed := s.feed.Changed
	if onCall != nil {
		changed = func(et store.Extraterrestrial) {
			onCall(et)
			t0 := time.Now()
			s.feed.Changed(et)
			if s.gap != nil {
				s.gap.add(time.UnixMicro(s.hub.LastID()).Sub(t0))
			}
		}
	}
	if err := s.engine.Register(speakandspell.NewWorker(speakandspell.Config{
		AnswerRate: answerRate, Rand: rand.New(rand.NewPCG(5, 2022)), OnCall: changed,
	})); err != nil {
		s.close()
		return nil, err
	}
	router := handlers.NewServer(logger, v, "bench",
		&handlers.Events{Hub: s.hub},
		&handlers.Extraterrestrials{
			Store: st, Views: v, Hub: s.hub,
			PhoneHome:   func(ctx context.Context) (int, error) { return speakandspell.PhoneHome(ctx, s.engine) },
			AnswerRate:  answerRate,
			MaxAttempts: speakandspell.MaxAttempts,
			Version:     "bench",
		})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.url = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	s.http.RegisterOnShutdown(s.hub.Close)
	go s.http.Serve(ln)
	return s, nil
}

func (s *server) close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.engine != nil {
		_ = s.engine.Stop(context.Background())
	}
	if s.feed != nil {
		_ = s.feed.Stop(context.Background())
	}
	s.hub.Close()
	s.st.Close()
}

// waitClients waits until the stream has n clients.
func (s *server) waitClients(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for s.hub.Clients()[applive.ExtraterrestrialsStream] < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d clients subscribed after %v", s.hub.Clients()[applive.ExtraterrestrialsStream], n, limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// memory is the Go heap and stacks in use and the resident set, after GC.
func memory() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapInuse + ms.StackInuse)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return heap, rss
}

// writeSyscalls is the number of write system calls this process made.
func writeSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
