package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testclock"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/internal/testwait"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
	"github.com/phonehome/phonehome/views"
)

// testServer is the whole app as app.go wires it, over a new database:
// the real router with every area, the hub, the feeds, a job engine, a
// LivePet sim whose ticks the tests run by hand with a fake clock, and a
// stats collector whose samples the tests take by hand.
type testServer struct {
	st       *store.Store
	path     string // the database file, or PostgreSQL URL
	engine   *jobs.Engine
	hub      *events.Hub
	feed     *live.ExtraterrestrialFeed
	jobsFeed *live.JobsFeed
	sim      *pets.Sim
	clock    *testclock.Clock
	stats    *stats.Collector
	counted  atomic.Int32 // calls of the collector's JobCounts source
	joined   chan string  // stream names, each time a client joins or leaves
	router   http.Handler
	srv      *httptest.Server
}

// serverOptions shape a testServer; zero fields take the defaults.
type serverOptions struct {
	// seed puts in the 10 seed extraterrestrials; generate, n generated ones.
	seed     bool
	generate int
	// queues are the engine's queues ({phone_calls: 50}); workers run
	// besides the campaign's, which answers one call in two.
	queues  map[string]int
	workers []jobs.Worker
	// start starts the engine; else jobs stay where the tests put them.
	start bool
	// phoneHome enqueues the campaign's calls before serving.
	phoneHome bool
	// jobsFeed tunes the jobs feed.
	jobsFeed live.JobsFeedConfig
	// answerRate is the answer rate the Phone Home page shows.
	answerRate float64
	// periodic are the engine's periodic jobs (the cron page's entries).
	periodic []jobs.PeriodicJob
	// readOnly makes the jobs dashboard read-only (-read-only).
	readOnly bool
	// backend is the database; zero means backendFor(t): SQLite, or
	// PostgreSQL for a suite run by TestHandlerSuitesOnPostgres.
	backend storetest.Backend
	// db is the database to open (of backend); empty: a new one.
	db string
}

var petEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const petTick = 5 * time.Second

// setupServer builds and serves a testServer; everything stops when the
// test ends.
func setupServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	ctx := context.Background()
	if o.backend.Dialect == "" {
		o.backend = backendFor(t)
	}
	if o.db == "" {
		o.db = o.backend.Target(t)
	}
	s := &testServer{path: o.db, joined: make(chan string, 64), clock: testclock.New(petEpoch)}
	s.st = migratedStore(t, s.path)
	if o.seed {
		if _, err := s.st.SeedExtraterrestrials(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if o.generate > 0 {
		if err := s.st.GenerateExtraterrestrials(ctx, o.generate); err != nil {
			t.Fatal(err)
		}
	}
	v, err := views.NewWith(views.Options{JobsReadOnly: o.readOnly})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	watchers := pets.NewWatchers()
	s.hub = events.New(events.Config{OnClients: func(stream string, n int) {
		watchers.Update(stream, n)
		select {
		case s.joined <- stream:
		default:
		}
	}})
	live.Register(s.hub)

	if o.queues == nil {
		o.queues = map[string]int{speakandspell.Queue: speakandspell.QueueLimit}
	}
	s.engine, err = jobs.New(s.st.Writer, jobs.Config{
		Queues: o.queues, Backoff: jobs.FixedBackoff(0), PollInterval: 20 * time.Millisecond,
		Reader: s.st.Reader, Logger: logger, Periodic: o.periodic,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.feed = live.NewExtraterrestrialFeed(s.st, v, s.hub, logger, 10*time.Millisecond)
	s.jobsFeed = live.NewJobsFeed(s.engine, s.st.Reader, v, s.hub, logger, o.jobsFeed)
	workers := append([]jobs.Worker{speakandspell.NewWorker(speakandspell.Config{
		AnswerRate: 0.5, Rand: rand.New(rand.NewPCG(5, 5)), OnCall: s.feed.Changed,
	})}, o.workers...)
	for _, w := range workers {
		if err := s.engine.Register(w); err != nil {
			t.Fatal(err)
		}
	}
	if o.phoneHome {
		if _, err := speakandspell.PhoneHome(ctx, s.engine); err != nil {
			t.Fatal(err)
		}
	}

	s.sim, err = pets.New(pets.Config{
		Store: s.st, Tick: petTick, Watchers: watchers, Publisher: live.NewPetFeed(v, s.hub, logger),
		Now: s.clock.Now, Logger: logger, ManualTicks: true,
		ActiveEvery: 5 * time.Millisecond, CountsEvery: 5 * time.Millisecond, Clients: s.hub.Clients,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.stats = s.newCollector()
	statsFeed := live.NewStatsFeed(s.stats, v, s.hub, logger)

	petPages := &handlers.Pets{Sim: s.sim, Store: s.st, Views: v, Hub: s.hub, Version: "test"}
	s.router = handlers.NewServer(logger, v, "test",
		&handlers.Health{Ping: s.st.Ping},
		&handlers.Events{Hub: s.hub, Resolve: petPages.ResolveStream},
		&handlers.Extraterrestrials{
			Store: s.st, Views: v, Hub: s.hub,
			PhoneHome:   func(ctx context.Context) (int, error) { return speakandspell.PhoneHome(ctx, s.engine) },
			AnswerRate:  o.answerRate,
			MaxAttempts: speakandspell.MaxAttempts,
			Version:     "test",
		},
		&handlers.Jobs{Engine: s.engine, Reader: s.st.Reader, Views: v, Hub: s.hub, Feed: s.jobsFeed, Version: "test", ReadOnly: o.readOnly},
		petPages,
		&handlers.Dashboard{Stats: s.stats, Views: v, Version: "test"})
	s.srv = httptest.NewServer(s.router)

	// Started as app.go starts them (the feeds first); stopped in reverse.
	runners := []interface {
		Start(context.Context) error
		Stop(context.Context) error
	}{s.feed, s.jobsFeed, statsFeed, s.sim}
	if o.start {
		runners = append(runners, s.engine)
	}
	for _, r := range runners {
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = s.engine.Stop(ctx)
		for i := len(runners) - 1; i >= 0; i-- {
			_ = runners[i].Stop(ctx)
		}
	})
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.hub.Close) // runs before srv.Close: open streams end first
	return s
}

// newCollector is the stats collector as app.go wires it, but for its
// clock (each reading a second after the one before, as samples would be)
// and its pets (a fixed figure).
func (s *testServer) newCollector() *stats.Collector {
	var tick atomic.Int64
	start := time.Now()
	return stats.New(stats.Config{
		Version: "test",
		Now:     func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Second) },
		Sources: stats.Sources{
			Clients: s.hub.Clients,
			JobCounts: func(ctx context.Context) (map[string]int, error) {
				s.counted.Add(1)
				counts, err := s.engine.Counts(ctx)
				out := make(map[string]int, len(counts))
				for st, n := range counts {
					out[string(st)] = n
				}
				return out, err
			},
			Throughput: func() []stats.ThroughputPoint {
				pts := s.engine.Throughput()
				out := make([]stats.ThroughputPoint, len(pts))
				for i, p := range pts {
					out[i] = stats.ThroughputPoint(p)
				}
				return out
			},
			Pets: func() stats.PetFigures {
				return stats.PetFigures{Alive: 1234, Dead: 56, Watched: 7, TickAt: time.Now(), TickDuration: 12 * time.Millisecond}
			},
			DB: live.DBSource(s.st),
		},
	})
}

// migratedStore opens the database at path (a SQLite file, or a PostgreSQL
// URL), brings it to the current schema and closes it when the test ends.
func migratedStore(t testing.TB, path string) *store.Store { return storetest.Open(t, path) }

// waitUntil waits for cond, failing the test when it is still false after
// within.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, within, what, cond)
}

// get is the body of GET path, failing the test unless it is a 200.
func (s *testServer) get(t testing.TB, path string) string {
	t.Helper()
	resp, body := request(t, s.srv.Client(), "GET", s.srv.URL+path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// request sends one request with client and returns the answer with its
// body read.
func request(t testing.TB, client *http.Client, method, url string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// noRedirects is a copy of c that hands redirects back instead of
// following them.
func noRedirects(c *http.Client) *http.Client {
	out := *c
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// openStream opens an event stream with client, as a page does, and reads
// it in the background: the channel closes when the stream ends, and the
// stream ends when the test does (or when stop is called).
func openStream(t testing.TB, client *http.Client, url string) (msgs <-chan events.Message, resp *http.Response, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("stream %s: status %d", url, resp.StatusCode)
	}
	stop = func() { cancel(); resp.Body.Close() }
	t.Cleanup(stop)
	return eventstest.Messages(resp.Body, 4096), resp, stop
}

// until reads msgs until one satisfies ok, failing after 10 s, and returns
// it with the ones before it.
func until(t testing.TB, msgs <-chan events.Message, what string, ok func(events.Message) bool) (events.Message, []events.Message) {
	t.Helper()
	return eventstest.Until(t, msgs, 10*time.Second, what, ok)
}

// next is the next event of msgs, within 10 s.
func next(t testing.TB, msgs <-chan events.Message) events.Message {
	t.Helper()
	m, _ := until(t, msgs, "next event", func(events.Message) bool { return true })
	return m
}

// answerCase is one request and what its answer must be: the status, and a
// body containing wantBody.
type answerCase struct {
	name, method, path string
	header             map[string]string
	body               string
	want               int
	wantBody           string
}

// checkAnswers sends each case with do, each as a subtest.
func checkAnswers(t *testing.T, do func(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string), cases []answerCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s: %d %.200q; want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.want, tt.wantBody)
			}
		})
	}
}
