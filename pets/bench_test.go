package pets_test

// Benchmarks at LivePet's target scale: 1,000,000 pets in one SQLite file.
// The database is generated once per test binary and copied for each
// benchmark. Run them with
//
//	go test -run '^$' -bench . -benchtime 20x ./pets/
//
// (BenchmarkGeneratePets1M makes a million rows per op: give it -benchtime 1x.)

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/internal/testclock"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

const (
	benchPets    = 1_000_000
	benchWatched = 1_000
)

var (
	benchOnce sync.Once
	benchDir  string
	benchDB   string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// millionPets returns a copy of a database of benchPets generated pets, born
// over the last 1.1 lifespans before epoch, for one benchmark to change.
func millionPets(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "pets-bench-")
		if benchErr != nil {
			return
		}
		benchDB = filepath.Join(benchDir, "million.db")
		ctx := context.Background()
		st, err := store.Open(ctx, benchDB)
		if err != nil {
			benchErr = err
			return
		}
		defer st.Close()
		if benchErr = st.Migrate(ctx); benchErr != nil {
			return
		}
		benchErr = st.GeneratePets(ctx, benchPets, store.GeneratePetsOptions{Now: epoch, Lifespan: pets.Rules{Tick: T}.Lifespan()})
		if benchErr == nil {
			_, benchErr = st.Writer.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	path := filepath.Join(b.TempDir(), "pets.db")
	src, err := os.Open(benchDB)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchSim is a sim over a copy of the million pets, publishing through the
// real feed (templates) into a real hub, with a fake clock at epoch.
type benchSim struct {
	sim   *pets.Sim
	st    *store.Store
	hub   *events.Hub
	clock *testclock.Clock
	alive []int64
}

func newBenchSim(b *testing.B, pub func(pets.Publisher) pets.Publisher) *benchSim {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, millionPets(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	v, err := views.New()
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	watchers := pets.NewWatchers()
	hub := events.New(events.Config{OnClients: watchers.Update})
	b.Cleanup(hub.Close)
	var p pets.Publisher = live.NewPetFeed(v, hub, logger)
	if pub != nil {
		p = pub(p)
	}
	c := testclock.New(epoch)
	sim, err := pets.New(pets.Config{Store: st, Tick: T, Watchers: watchers, Publisher: p, Now: c.Now, Logger: logger, ManualTicks: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sim.Stop(context.Background()) })
	var alive []int64
	if err := st.Reader.Select(&alive, "SELECT id FROM pets WHERE died_at IS NULL AND born_at > ? ORDER BY id",
		epoch.Add(-time.Hour).Add(-sim.Rules().Lifespan()/2).UnixMilli()); err != nil {
		b.Fatal(err)
	}
	return &benchSim{sim: sim, st: st, hub: hub, clock: c, alive: alive}
}

// watch makes n random living pets watched (one client each).
func (s *benchSim) watch(n int) []int64 {
	rng := rand.New(rand.NewPCG(7, 8))
	ids := slices.Clone(s.alive)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ids = ids[:n]
	for _, id := range ids {
		s.sim.Watchers().Update(pets.Stream(id), 1)
	}
	return ids
}

// BenchmarkTick is one full tick at a million pets with 1,000 of them
// watched: the death sweep of what came due (about 100 pets a tick), then
// rendering and publishing the 1,000 watched pets' states.
func BenchmarkTick(b *testing.B) {
	s := newBenchSim(b, nil)
	s.watch(benchWatched)
	ctx := context.Background()
	if err := s.sim.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	died, rendered := runTicks(b, s, T)
	b.ReportMetric(float64(died)/float64(b.N), "deaths/op")
	b.ReportMetric(float64(rendered)/float64(b.N), "rendered/op")
}

// BenchmarkSweep is the death sweep of one tick at a million pets, nobody
// watching: the part of a tick whose cost depends on the number of pets.
func BenchmarkSweep(b *testing.B) {
	benchSweep(b, T)
}

// BenchmarkSweepAfterAnHourDown is the catch-up at start after the process
// was down for an hour: 720 ticks of deaths (about 65,000 pets) at once.
// Each op moves another hour on, so later ops find fewer pets to kill once
// the oldest have all died: ns/death is the figure to read.
func BenchmarkSweepAfterAnHourDown(b *testing.B) {
	benchSweep(b, time.Hour)
}

// BenchmarkActiveList publishes the "Active pets" box to all 1,000 watched
// pets' pages, as happens (at most twice a second) when the watched set
// changes.
func BenchmarkActiveList(b *testing.B) {
	s := newBenchSim(b, nil)
	ids := s.watch(benchWatched)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Someone leaves and comes back: the set changes.
		s.sim.Watchers().Update(pets.Stream(ids[i%len(ids)]), 0)
		s.sim.Watchers().Update(pets.Stream(ids[i%len(ids)]), 1)
		if err := s.sim.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGeneratePets1M bulk-inserts a million pets into a new database
// (seed -pets 1000000).
func BenchmarkGeneratePets1M(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		st, err := store.Open(ctx, filepath.Join(b.TempDir(), "gen.db"))
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := st.GeneratePets(ctx, benchPets, store.GeneratePetsOptions{Now: epoch, Lifespan: pets.Rules{Tick: T}.Lifespan()}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchPets)*float64(b.N)/b.Elapsed().Seconds(), "pets/s")
}

// BenchmarkFeed is a keeper's feed at a million pets: one IMMEDIATE write
// transaction, committed before Feed returns.
func BenchmarkFeed(b *testing.B) {
	s := newBenchSim(b, nil)
	ctx := context.Background()
	ids := s.alive[:1000]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := ids[i%len(ids)]
		if _, err := s.sim.Feed(ctx, store.SeedKeeperID, id); err != nil {
			b.Fatal(err)
		}
	}
}

// liveSignal wraps the real feed and reports the published states of the
// pet it is waiting for.
type liveSignal struct {
	pets.Publisher
	wanted atomic.Int64
	live   chan pets.State
}

func (l *liveSignal) Live(states []pets.State) {
	l.Publisher.Live(states)
	for _, s := range states {
		if s.ID == l.wanted.Load() {
			select {
			case l.live <- s:
			default:
			}
		}
	}
}

// BenchmarkFeedToEvent measures, at a million pets with 1,000 watched and a
// tick running every 50 ms (100 times the default rate), the time from a
// keeper pressing Feed to the fed state being published on the pet's stream.
func BenchmarkFeedToEvent(b *testing.B) {
	var signal *liveSignal
	s := newBenchSim(b, func(p pets.Publisher) pets.Publisher {
		signal = &liveSignal{Publisher: p, live: make(chan pets.State, 4096)}
		return signal
	})
	watched := s.watch(benchWatched)
	ctx := context.Background()
	s.sim.Flush(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := s.sim.Tick(ctx, s.clock.Now()); err != nil {
					b.Error(err)
				}
			}
		}
	})
	var lat []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := watched[i%len(watched)]
		signal.wanted.Store(id)
		s.clock.Set(epoch.Add(time.Duration(i+1) * time.Millisecond)) // each feed at its own instant
		start := time.Now()
		fed, err := s.sim.Feed(ctx, store.SeedKeeperID, id)
		if err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			select {
			case st := <-signal.live:
				got = st.ID == id && st.HungerAt.Equal(fed.HungerAt)
			case <-time.After(10 * time.Second):
				b.Fatal("no event within 10 s")
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkHeap reports the Go heap that a started sim over a million pets
// holds, 1,000 of them watched: no per-pet state at all (rows stay in SQLite
// and states are derived on demand), so it does not grow with the pets. The
// hub's resume windows, which do grow with watched pets and events, are left
// out: no event is published here.
func BenchmarkHeap(b *testing.B) {
	millionPets(b) // generated before measuring
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newBenchSim(b, nil)
	s.watch(benchWatched)
	s.alive = nil // the benchmark's own list
	for b.Loop() {
		_ = s.sim.Counts()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ReportMetric(heap/(1<<20), "heap-MiB")
	b.ReportMetric(heap/benchPets, "heap-bytes/pet")
	runtime.KeepAlive(s)
}

// benchSweep runs one tick per op at a million pets, nobody watching, each
// tick step after the last, and reports deaths per op and the cost of each
// death.
func benchSweep(b *testing.B, step time.Duration) {
	died, _ := runTicks(b, newBenchSim(b, nil), step)
	b.ReportMetric(float64(died)/float64(b.N), "deaths/op")
	if died > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(died), "ns/death")
	}
}

// runTicks ticks s once per op, each tick step after the last from epoch,
// timing the ticks only, and returns the deaths and renders they counted.
func runTicks(b *testing.B, s *benchSim, step time.Duration) (died, rendered int) {
	ctx := context.Background()
	now := epoch
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(step)
		s.clock.Set(now)
		stats, err := s.sim.Tick(ctx, now)
		if err != nil {
			b.Fatal(err)
		}
		died += stats.Died
		rendered += stats.Rendered
	}
	return died, rendered
}
