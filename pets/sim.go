package pets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/internal/setting"
	"github.com/phonehome/phonehome/store"
)

// ActiveShown is how many of the other watched pets a pet's page lists.
const ActiveShown = 12

// Publisher shows what the simulation decides on live pages;
// live.PetFeed renders the fragments and publishes them. Live, Died and
// Active are called by one goroutine at a time, in order, so a pet's page
// never receives an older state after a newer one for long (see Sim).
type Publisher interface {
	// Live shows the state of watched, living pets, each on its own stream.
	Live(states []State)
	// Died shows on its own stream that a watched pet has died: its page
	// stops being live.
	Died(s State)
	// Active tells every watched pet's page which other pets are watched.
	Active(a Active)
	// Listed shows on the list of all pets a pet that was adopted (adopted
	// is true) or has died.
	Listed(s State, adopted bool)
	// Resync tells the list of all pets to reload: too much changed at once.
	Resync()
	// Counts shows the alive and dead counts on the list of all pets.
	Counts(c store.PetCounts)
}

// TickStats describe one tick.
type TickStats struct {
	// At is the simulated instant of the tick.
	At time.Time
	// Duration is how long the tick took.
	Duration time.Duration
	// Died is how many deaths the tick recorded.
	Died int
	// Rendered is how many watched pets' states it published.
	Rendered int
}

// Config sets up a Sim. Store is required; zero fields take the defaults.
type Config struct {
	Store *store.Store
	// Tick is the tick length T (DefaultTick).
	Tick time.Duration
	// Watchers is the registry the hub feeds (a new one if nil).
	Watchers *Watchers
	// Publisher shows what happens (nothing if nil).
	Publisher Publisher
	// Now is the clock (time.Now); tests pass a fake one.
	Now    func() time.Time
	Logger *slog.Logger
	// ManualTicks leaves ticking to whoever calls Tick (tests); the loop
	// still publishes changes.
	ManualTicks bool
	// ActiveEvery bounds how often the active-pets list is sent (500 ms).
	ActiveEvery time.Duration
	// CountsEvery bounds how often the alive/dead counts are sent (1 s).
	CountsEvery time.Duration
	// Clients, when set, reports the hub's client count per stream; every
	// tick reconciles the watchers with it.
	Clients func() map[string]int
	// SweepBatch is how many deaths one transaction records (1,000).
	SweepBatch int
	// ListedDeaths is how many deaths a tick shows on the list of all pets
	// one by one; beyond it, the list is told to reload (100).
	ListedDeaths int

	// Presence, when set, makes LivePet one over several nodes sharing a
	// PostgreSQL database: this node's viewer counts go to it
	// (cluster.Presence), the other nodes' are read back every
	// PresenceEvery, and a pet fed or treated here is announced to the
	// other nodes (NOTIFY) so that their pages show it at once. Nil (one
	// node, and always on SQLite, where only one process serves a file):
	// the viewers are this process's streams, as before.
	Presence Mirror
	// Node is this node's name in the presence rows (cluster.NodeName);
	// required with Presence.
	Node string
	// PresenceTTL is how long a presence row counts after its node last
	// refreshed it: cluster.Presence's TTL (6 s, its default).
	PresenceTTL time.Duration
	// PresenceEvery is how often the other nodes' viewers are read (1 s).
	PresenceEvery time.Duration
	// Listener is the process's LISTEN connection on PostgreSQL, shared
	// with its other parts: with Presence, the sim subscribes to
	// store.PetChannel at Start and leaves at Stop, and whoever made the
	// listener starts it before and stops it after. Nil: the sim makes one
	// of its own (one more connection).
	Listener *pglisten.Listener

	// IsLeader, when set, tells whether this node leads the maintenance
	// (cluster.Lease.IsLeader): only the leader records deaths (the sweep,
	// and the catch-up at Start). A node that does not lead shows its own
	// watchers the deaths the leader recorded, or that came due, from the
	// pets' rows, and re-reads the counts every tick. Nil: always leads.
	IsLeader func() bool
}

// Sim runs LivePet: it records deaths as they come due, publishes the live
// state of watched pets every tick, and carries out keepers' actions.
//
// All writes are single IMMEDIATE transactions on the store's one writer, so
// feeds, treats and deaths never race and none is lost. One goroutine at a
// time (the loop, or a test calling Tick or Flush) reads and publishes
// watched pets' states, after the writes it reflects have committed; a
// feed's new state is published by the loop right after the feed commits.
type Sim struct {
	cfg      Config
	rules    Rules
	store    *store.Store
	watchers *Watchers
	pub      Publisher
	log      *slog.Logger
	now      func() time.Time

	// work serialises ticks and flushes: one publisher of pet streams.
	work sync.Mutex

	mu          sync.Mutex
	counts      store.PetCounts
	countsDirty bool
	activeDirty bool
	dirty       map[int64]struct{} // pets changed by an action since the last publish
	lastActive  time.Time          // wall clock of the last active-list publish
	lastCounts  time.Time
	running     bool

	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc

	lastTick atomic.Pointer[TickStats]

	// mourned are the pets whose death this node's pages were shown: a
	// death is shown once, by the sweep or, on a node that does not
	// sweep, by the first publish that finds the pet dead.
	mourned map[int64]struct{}
	// notify is whether actions NOTIFY the other nodes (Presence on
	// PostgreSQL); the sim then hears theirs through listen, its use of
	// Config.Listener (nil otherwise).
	notify bool
	listen *pglisten.Part
	// activeDeath is when the first pet of the last active list dies:
	// the list is sent again then, whichever node records the death.
	activeDeath time.Time
	// presenceSwept is when readPresence last swept dead nodes' rows.
	presenceSwept time.Time
	// presenceFailing is whether the last read of the other nodes'
	// viewers failed (logged once per run of failures).
	presenceFailing bool
}

// New makes a Sim; Start starts it.
func New(cfg Config) (*Sim, error) {
	if cfg.Store == nil {
		return nil, errors.New("pets: Config.Store is required")
	}
	setting.Default(&cfg.Tick, DefaultTick)
	if cfg.Watchers == nil {
		cfg.Watchers = NewWatchers()
	}
	if cfg.Publisher == nil {
		cfg.Publisher = nopPublisher{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	setting.Default(&cfg.ActiveEvery, 500*time.Millisecond)
	setting.Default(&cfg.CountsEvery, time.Second)
	setting.Default(&cfg.SweepBatch, 1000)
	setting.Default(&cfg.ListedDeaths, 100)
	if cfg.Presence != nil {
		if cfg.Node == "" {
			return nil, errors.New("pets: Config.Node is required with Presence")
		}
		setting.Default(&cfg.PresenceTTL, DefaultPresenceTTL)
		setting.Default(&cfg.PresenceEvery, DefaultPresenceEvery)
		cfg.Watchers.SetMirror(cfg.Presence)
	}
	s := &Sim{
		cfg: cfg, rules: Rules{Tick: cfg.Tick}, store: cfg.Store, watchers: cfg.Watchers,
		pub: cfg.Publisher, log: cfg.Logger, now: cfg.Now,
		dirty:   map[int64]struct{}{},
		mourned: map[int64]struct{}{},
		notify:  cfg.Presence != nil && cfg.Store.Dialect == store.Postgres,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.notify {
		s.listen = pglisten.For(cfg.Listener, cfg.Store.Writer.DB, pglisten.Options{Logger: cfg.Logger})
	}
	return s, nil
}

// Rules are the sim's rules (its tick length).
func (s *Sim) Rules() Rules { return s.rules }

// Now is the sim's clock.
func (s *Sim) Now() time.Time { return s.now() }

// Watchers is the registry of watched pets.
func (s *Sim) Watchers() *Watchers { return s.watchers }

// Start catches up with the time that passed while the process was down
// (every pet whose life ran out meanwhile is recorded dead, at the instant it
// died), counts the pets, and starts the loop. It returns when the catch-up
// is done.
func (s *Sim) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("pets: sim already started")
	}
	s.running = true
	s.mu.Unlock()

	started := time.Now()
	counts, err := s.store.CountPets(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.counts = counts
	s.mu.Unlock()
	died := 0
	if s.leading() {
		s.work.Lock()
		died, err = s.sweep(ctx, s.now())
		s.work.Unlock()
		if err != nil {
			return fmt.Errorf("catch up on deaths: %w", err)
		}
	}
	s.log.Info("pets resumed", "alive", counts.Alive-died, "dead", counts.Dead+died, "died_while_down", died,
		"tick", s.rules.Tick, "took", time.Since(started).Round(time.Millisecond))

	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if s.cfg.Presence != nil {
		// The other nodes' viewers count from the first page served.
		s.readPresence(ctx)
	}
	if err := s.listen.Start(ctx, s.subscription()); err != nil {
		cancel()
		return err
	}
	go s.loop(loopCtx)
	return nil
}

// Stop ends the loop and waits for it, at most until ctx ends; a tick in
// progress finishes first. Nothing needs saving: every change was
// committed when it happened.
func (s *Sim) Stop(ctx context.Context) error {
	s.mu.Lock()
	running := s.running && s.cancel != nil
	s.running = false
	s.mu.Unlock()
	if !running {
		return nil
	}
	close(s.stop)
	s.cancel()
	err := s.listen.Stop(ctx)
	select {
	case <-s.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sim) loop(ctx context.Context) {
	defer close(s.done)
	var tick <-chan time.Time
	if !s.cfg.ManualTicks {
		t := time.NewTicker(s.rules.Tick)
		defer t.Stop()
		tick = t.C
	}
	var poll <-chan time.Time
	if s.cfg.Presence != nil {
		t := time.NewTicker(s.cfg.PresenceEvery)
		defer t.Stop()
		poll = t.C
	}
	var later <-chan time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-poll:
			s.readPresence(ctx)
		case <-tick:
			stats, err := s.Tick(ctx, s.now())
			if err != nil && ctx.Err() == nil {
				s.log.Error("pet tick", "err", err)
			}
			s.log.Debug("pet tick", "took", stats.Duration, "died", stats.Died, "rendered", stats.Rendered)
		case <-s.wake:
		case <-s.watchers.Changed():
		case <-later:
			later = nil
		}
		if wait := s.flush(ctx, false); wait > 0 && later == nil {
			later = time.After(wait)
		}
	}
}

// poke wakes the loop to publish pending changes.
func (s *Sim) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Tick runs one tick at now: it records the deaths that came due, then
// publishes the state of every watched living pet. The loop calls it every
// Tick; tests call it with a fake clock.
func (s *Sim) Tick(ctx context.Context, now time.Time) (TickStats, error) {
	s.work.Lock()
	defer s.work.Unlock()
	started := time.Now()
	if s.cfg.Clients != nil {
		s.watchers.Reconcile(s.cfg.Clients())
	}
	stats := TickStats{At: now}
	if s.leading() {
		died, err := s.sweep(ctx, now)
		stats.Died = died
		if err != nil {
			return stats, err
		}
	} else if err := s.recount(ctx); err != nil {
		return stats, err
	}
	// Every watched pet is published now, so pending changes are covered.
	_, setChanged := s.watchers.Take()
	s.mu.Lock()
	clear(s.dirty)
	if setChanged {
		s.activeDirty = true
	}
	s.mu.Unlock()
	var err error
	stats.Rendered, err = s.publishLive(ctx, s.watchers.LocalWatched(), now)
	s.forgetMourned()
	stats.Duration = time.Since(started)
	s.lastTick.Store(&stats)
	// Deaths change the counts and maybe the active list: the loop sends them.
	s.poke()
	return stats, err
}

// LastTick describes the most recent tick (zero before the first).
func (s *Sim) LastTick() TickStats {
	if t := s.lastTick.Load(); t != nil {
		return *t
	}
	return TickStats{}
}

// states loads pets and derives their state at now, with viewers, in the
// order of ids; missing pets are left out.
func (s *Sim) states(ctx context.Context, ids []int64, now time.Time) ([]State, error) {
	rows, err := s.store.GetPets(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]store.Pet, len(rows))
	for _, p := range rows {
		byID[p.ID] = p
	}
	viewers := s.watchers.Counts(ids)
	out := make([]State, 0, len(rows))
	for i, id := range ids {
		p, ok := byID[id]
		if !ok {
			continue
		}
		st := s.rules.State(p, now)
		st.Viewers = viewers[i]
		out = append(out, st)
	}
	return out, nil
}

// publishLive publishes the state of those of ids that are watched and alive.
func (s *Sim) publishLive(ctx context.Context, ids []int64, now time.Time) (int, error) {
	n := 0
	// Small chunks, and between them the pets fed or treated meanwhile: a
	// feed never waits for a whole tick's rendering to be seen.
	const chunk = 100
	for start := 0; start < len(ids); start += chunk {
		m, err := s.publishStates(ctx, ids[start:min(len(ids), start+chunk)], now)
		n += m
		if err != nil {
			return n, err
		}
		if urgent := s.takeDirty(); len(urgent) > 0 {
			m, err := s.publishStates(ctx, urgent, s.now())
			n += m
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// publishStates publishes the state at now of those of ids that are alive
// and watched on this node, and the death of those watched here that died
// (once: see mourned). A node that does not run the death sweep (several
// nodes: only the leader does) shows its pages the death this way, at the
// instant the pet's state says it died, as the sweep would.
func (s *Sim) publishStates(ctx context.Context, ids []int64, now time.Time) (int, error) {
	states, err := s.states(ctx, ids, now)
	if err != nil {
		return 0, err
	}
	shown := make([]int64, len(states))
	for i, st := range states {
		shown[i] = st.ID
	}
	local := s.watchers.LocalCounts(shown)
	live := states[:0]
	for i, st := range states {
		switch {
		case local[i] == 0:
		case st.Alive:
			live = append(live, st)
		case s.mourn(st.ID):
			s.pub.Died(st)
		}
	}
	if len(live) > 0 {
		s.pub.Live(live)
	}
	return len(live), nil
}

// takeDirty returns (and forgets) the pets changed by actions since they
// were last published.
func (s *Sim) takeDirty() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dirty) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(s.dirty))
	for id := range s.dirty {
		ids = append(ids, id)
	}
	clear(s.dirty)
	slices.Sort(ids)
	return ids
}

// Flush publishes every pending change now, ignoring the rate limits: the
// states of pets changed by actions or whose watchers changed, the active
// list and the counts. The loop does the same as changes come; tests call it
// to have them at once.
func (s *Sim) Flush(ctx context.Context) error {
	_, err := s.flushErr(ctx, true)
	return err
}

func (s *Sim) flush(ctx context.Context, force bool) time.Duration {
	wait, err := s.flushErr(ctx, force)
	if err != nil && ctx.Err() == nil {
		s.log.Error("publish pet changes", "err", err)
	}
	return wait
}

// flushErr publishes pending changes, the rate-limited ones when due, and
// returns how long until the next rate-limited one may go (0: none pending).
func (s *Sim) flushErr(ctx context.Context, force bool) (time.Duration, error) {
	s.work.Lock()
	defer s.work.Unlock()
	now := s.now()
	touched, setChanged := s.watchers.Take()
	touched = append(touched, s.takeDirty()...)
	if setChanged {
		s.mu.Lock()
		s.activeDirty = true
		s.mu.Unlock()
	}
	slices.Sort(touched)
	touched = slices.Compact(touched)
	_, err := s.publishLive(ctx, touched, now)

	wall := time.Now()
	s.mu.Lock()
	if !s.activeDeath.IsZero() && !now.Before(s.activeDeath) {
		s.activeDirty, s.activeDeath = true, time.Time{}
	}
	doActive := s.activeDirty && (force || wall.Sub(s.lastActive) >= s.cfg.ActiveEvery)
	if doActive {
		s.activeDirty, s.lastActive = false, wall
	}
	doCounts := s.countsDirty && (force || wall.Sub(s.lastCounts) >= s.cfg.CountsEvery)
	if doCounts {
		s.countsDirty, s.lastCounts = false, wall
	}
	counts := s.counts
	s.mu.Unlock()

	if doActive {
		a, aerr := s.active(ctx, now)
		if aerr != nil {
			err = errors.Join(err, aerr)
			s.mu.Lock()
			s.activeDirty = true
			s.mu.Unlock()
		} else {
			s.pub.Active(a)
		}
	}
	if doCounts {
		s.pub.Counts(counts)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var wait time.Duration
	if s.activeDirty {
		wait = max(time.Millisecond, s.cfg.ActiveEvery-wall.Sub(s.lastActive))
	}
	if s.countsDirty {
		w := max(time.Millisecond, s.cfg.CountsEvery-wall.Sub(s.lastCounts))
		if wait == 0 || w < wait {
			wait = w
		}
	}
	return wait, err
}

// nopPublisher shows nothing, for a Sim without a Publisher.
type nopPublisher struct{}

func (nopPublisher) Live([]State)           {}
func (nopPublisher) Died(State)             {}
func (nopPublisher) Active(Active)          {}
func (nopPublisher) Listed(State, bool)     {}
func (nopPublisher) Resync()                {}
func (nopPublisher) Counts(store.PetCounts) {}
