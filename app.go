package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/broker"
	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/jobs/housekeeping"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/stats"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// Config is everything the server is configured with.
type Config struct {
	Addr       string
	DB         string
	Backoff    jobs.Backoff
	AnswerRate float64
	Poll       time.Duration
	Grace      time.Duration
	LogLevel   slog.Level
	// Rand is the phone calls' random source; nil seeds one at random.
	// Tests set it to make a campaign reproducible.
	Rand *rand.Rand
	// CountsEvery bounds how often live counts are sent (250 ms).
	CountsEvery time.Duration
	// Token, when set, is required of every request (see
	// handlers.RequireToken); it must be set to listen beyond loopback.
	Token string
	// PruneAfter is how long finished jobs are kept (24 h; negative:
	// forever).
	PruneAfter time.Duration
	// PetTick is LivePet's tick (pets.DefaultTick).
	PetTick time.Duration
	// Sync is SQLite's durability (store.SyncNormal when empty).
	Sync store.Sync
	// TLSCert and TLSKey, when set, are the PEM files to serve HTTPS (and
	// HTTP/2) with.
	TLSCert, TLSKey string
	// CPUProfile, when set, is the file the command line writes a CPU
	// profile of the whole process to (main.go reads it; NewApp does not).
	CPUProfile string
	// AllowHosts are host names answered besides the bound address,
	// localhost and loopback literals (see handlers.HostCheck).
	AllowHosts []string
	// ReadOnly makes the jobs dashboard and its API show everything and
	// refuse every action with 403 (-read-only). The rest of the app
	// (Phone Home, LivePet) is not the jobs dashboard and works as usual.
	ReadOnly bool
	// Node names this process among the nodes serving one database (-node):
	// in logs, /api/stats, /metrics and the jobs' attempts. Empty:
	// cluster.NodeName() (host/pid/random).
	Node string
}

// runner is everything of the App that runs: started in order by NewApp,
// stopped in reverse by close.
type runner interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// App is the wired server: main.go reads the configuration, and NewApp
// builds everything from it.
type App struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	engine *jobs.Engine
	hub    *events.Hub
	pets   *pets.Sim
	// calls is the feed the phone calls report to (tests publish through it).
	calls  *live.ExtraterrestrialFeed
	stats  *stats.Collector
	router *echo.Echo
	server *http.Server
	// tls is whether server serves HTTPS (its TLSConfig is not read once
	// serving: net/http's HTTP/2 set-up writes it).
	tls bool
	ln  net.Listener
	// started are the runners started so far, in order.
	started []runner
	// unlock releases the SQLite file's lock (cluster.LockSQLite); nil on
	// PostgreSQL, where several nodes share the database.
	unlock func() error
	// node is this process's name (Config.Node or cluster.NodeName()),
	// the same in the logs, the job engine, the lease and the stats.
	node string
	// listener is this process's one LISTEN connection on PostgreSQL,
	// shared by the engine, the lease, the broker and LivePet; nil on
	// SQLite.
	listener *pglisten.Listener
	// lease is the maintenance lease on PostgreSQL; nil on SQLite, where
	// this process is alone (LockSQLite) and always leads.
	lease *cluster.Lease
}

// NewApp opens and migrates the database (seeding a new one), builds the
// job engine, the event hub and the router, and listens on cfg.Addr. Run
// serves; on an error nothing is left open. It reads straight down: what
// serves, the database, the cluster, the live events, then each part
// (jobs, pets, stats), the router, and last the runners started in order.
func NewApp(ctx context.Context, cfg Config, logger *slog.Logger) (app *App, err error) {
	cfg.setDefaults()
	// Every log line names the node: with several behind a load balancer,
	// which one said it is the first question.
	a := &App{cfg: cfg, node: cmp.Or(cfg.Node, cluster.NodeName())}
	baseLogger := logger
	a.log = logger.With("node", a.node)
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	tlsConfig, err := serving(cfg.Addr, cfg.Token, cfg.TLSCert, cfg.TLSKey, a.log)
	if err != nil {
		return nil, err
	}
	vopts := views.Options{JobsReadOnly: cfg.ReadOnly}
	if store.IsPostgresURL(cfg.DB) {
		vopts.Database = "PostgreSQL"
	}
	v, err := views.NewWith(vopts)
	if err != nil {
		return nil, err
	}
	if err := a.openDatabase(ctx); err != nil {
		return nil, err
	}
	if a.store.Dialect == store.Postgres {
		a.listener = pglisten.New(a.store.Writer.DB, pglisten.Options{Logger: a.log})
	}
	leaseRunner, isLeader, err := a.joinCluster(a.store, baseLogger)
	if err != nil {
		return nil, err
	}

	watchers := pets.NewWatchers()
	a.hub = events.New(events.Config{OnClients: watchers.Update})
	live.Register(a.hub)
	// What the feeds publish through (the hub, or the broker on PostgreSQL).
	// The broker's table is trimmed by the maintenance leader.
	pub, brk := livePublisher(a.store, a.hub, isLeader, a.listener, a.log)

	etFeed, jobsFeed, err := a.buildJobs(v, pub, isLeader)
	if err != nil {
		return nil, err
	}
	petPages, petsPresence, err := a.buildPets(v, pub, watchers, isLeader)
	if err != nil {
		return nil, err
	}
	statsFeed := a.buildStats(v, brk)
	a.buildServer(v, pub, jobsFeed, petPages, tlsConfig)

	// The node's name must be its own before anything runs under it (the
	// lease first of all: it would lead, and resign, in another's name).
	if err := a.engine.CheckNameFree(ctx); err != nil {
		return nil, err
	}
	// The feeds first, so that they hear of everything the others do; the
	// broker before them, so that it carries all they publish; the lease
	// before them all, so that it is stopped (and resigned) last.
	runners := []runner{etFeed, jobsFeed, statsFeed, a.engine}
	if brk != nil {
		runners = append([]runner{brk}, runners...)
	}
	if leaseRunner != nil {
		runners = append([]runner{leaseRunner}, runners...)
	}
	if a.listener != nil {
		// Started first and stopped last: every part above listens on it.
		runners = append([]runner{a.listener}, runners...)
	}
	if petsPresence != nil {
		runners = append(runners, petsPresence) // before the sim, which feeds it
	}
	runners = append(runners, a.pets, a.stats)
	for _, r := range runners {
		if err := r.Start(ctx); err != nil {
			return nil, err
		}
		a.started = append(a.started, r)
	}
	return a, nil
}

// openDatabase listens on the address, takes the SQLite file's lock, and
// opens and migrates the database, seeding each table that is empty: a new
// database, or one `phonehome migrate` made (atomically: nodes starting
// together on PostgreSQL seed once).
func (a *App) openDatabase(ctx context.Context) error {
	// Listen first: a port in use is reported before the database is touched.
	var err error
	a.ln, err = net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (%s)", a.cfg.Addr, err, listenHint(err))
	}
	if !store.IsPostgresURL(a.cfg.DB) {
		// Before the lock file is made beside it.
		if err := store.CheckSQLitePath(a.cfg.DB); err != nil {
			return err
		}
	}
	if a.unlock, err = lockSQLite(a.cfg.DB, a.log); err != nil {
		return err
	}
	st, _, err := openMigrated(ctx, a.cfg.DB, store.Options{Sync: a.cfg.Sync})
	if err != nil {
		return err
	}
	a.store = st
	n, err := st.SeedExtraterrestrials(ctx)
	if err != nil {
		return err
	}
	np, err := st.SeedPetsIfEmpty(ctx, time.Now(), a.cfg.PetTick)
	if err != nil {
		return err
	}
	if n+np > 0 {
		a.log.Info("empty tables seeded", "db", st.Path, "extraterrestrials", n, "pets", np)
	}
	return nil
}

// buildJobs builds the job engine with its workers (the phone calls and
// the housekeeping), the extraterrestrials' feed the calls report to, and
// the jobs dashboard's feed.
func (a *App) buildJobs(v *views.Views, pub live.Publisher, isLeader func() bool) (*live.ExtraterrestrialFeed, *live.JobsFeed, error) {
	st := a.store
	etFeed := live.NewExtraterrestrialFeed(st, v, pub, a.log, a.cfg.CountsEvery)
	a.calls = etFeed
	// Several nodes: the calls' row events commit with the calls (see
	// RowsChangedTx), and after the commit the worker only tells the counts.
	var onCallsTx func(context.Context, *sqlx.Tx, []store.Extraterrestrial) error
	onCall := etFeed.Changed
	if etFeed.PublishesInTransaction() {
		onCallsTx, onCall = etFeed.RowsChangedTx, etFeed.CountsChanged
	}
	var err error
	a.engine, err = jobs.New(st.Writer, jobs.Config{
		Queues:       map[string]int{speakandspell.Queue: speakandspell.QueueLimit, housekeeping.Queue: housekeeping.QueueLimit},
		PollInterval: a.cfg.Poll,
		Backoff:      a.cfg.Backoff,
		Logger:       a.log,
		Reader:       st.Reader,
		PruneAfter:   a.cfg.PruneAfter,
		// The cron page's entry: the database's hourly optimisation.
		Periodic: []jobs.PeriodicJob{housekeeping.Periodic(st.Dialect)},
		Node:     a.node,
		IsLeader: isLeader,
		Listener: a.listener,
	})
	if err != nil {
		return nil, nil, err
	}
	jobsFeed := live.NewJobsFeed(a.engine, st.Reader, v, pub, a.log, live.JobsFeedConfig{})
	err = a.engine.Register(speakandspell.NewWorker(speakandspell.Config{
		AnswerRate: a.cfg.AnswerRate,
		Rand:       a.cfg.Rand,
		OnCall:     onCall,
		OnCallsTx:  onCallsTx,
	}))
	if err != nil {
		return nil, nil, err
	}
	if err := a.engine.Register(housekeeping.OptimizeWorker{DB: st.Writer}); err != nil {
		return nil, nil, err
	}
	return etFeed, jobsFeed, nil
}

// buildPets builds LivePet's simulation (publishing through pub, watched
// through watchers), its pages, and on PostgreSQL its presence across the
// nodes (nil on SQLite).
func (a *App) buildPets(v *views.Views, pub live.Publisher, watchers *pets.Watchers, isLeader func() bool) (*handlers.Pets, *cluster.Presence, error) {
	petsCfg := pets.Config{
		Store:     a.store,
		Tick:      a.cfg.PetTick,
		Watchers:  watchers,
		Publisher: live.NewPetFeed(v, pub, a.log),
		Logger:    a.log,
		Clients:   a.hub.Clients,
		IsLeader:  isLeader,
		Listener:  a.listener,
	}
	presence, err := livePetNodes(a.store, a.node, a.log, &petsCfg)
	if err != nil {
		return nil, nil, err
	}
	a.pets, err = pets.New(petsCfg)
	if err != nil {
		return nil, nil, err
	}
	return &handlers.Pets{Sim: a.pets, Store: a.store, Views: v, Hub: a.hub, Version: Version()}, presence, nil
}

// buildStats builds the runtime dashboard's collector and its feed: the
// collector samples every second and, while the stats streams have
// clients, hands each sample to the feed to render and publish.
func (a *App) buildStats(v *views.Views, brk *broker.Broker) *live.StatsFeed {
	a.stats = stats.New(stats.Config{
		Version: Version(),
		Node:    a.node,
		Sources: stats.Sources{
			Clients:    a.hub.Clients,
			JobCounts:  a.jobCounts,
			Throughput: a.throughput,
			Pets:       a.petFigures,
			DB:         live.DBSource(a.store),
			Nodes:      a.nodes,
			LiveEvents: liveEventLosses(brk),
		},
		Logger: a.log,
	})
	return live.NewStatsFeed(a.stats, v, a.hub, a.log)
}

// buildServer builds the router over every page and API, behind the host
// check and the token, and the HTTP server that serves it.
func (a *App) buildServer(v *views.Views, pub live.Publisher, jobsFeed *live.JobsFeed, petPages *handlers.Pets, tlsConfig *tls.Config) {
	st := a.store
	router := handlers.NewServer(a.log, v, Version(),
		&handlers.Health{Ping: st.Ping},
		&handlers.Events{Hub: a.hub, Resolve: petPages.ResolveStream},
		&handlers.Extraterrestrials{
			Store: st, Views: v, Hub: a.hub,
			PhoneHome: func(ctx context.Context) (int, error) {
				return speakandspell.PhoneHome(ctx, a.engine)
			},
			AnswerRate:  a.cfg.AnswerRate,
			MaxAttempts: speakandspell.MaxAttempts,
			Version:     Version(),
		},
		&handlers.Jobs{Engine: a.engine, Reader: st.Reader, Views: v, Hub: a.hub, Publisher: pub, Feed: jobsFeed, Version: Version(), ReadOnly: a.cfg.ReadOnly},
		petPages,
		&handlers.Dashboard{Stats: a.stats, Views: v, Version: Version()},
	)
	a.router = router
	router.Use(handlers.HostCheck(a.cfg.Addr, a.cfg.AllowHosts))
	if a.cfg.Token != "" {
		router.Use(handlers.RequireToken(a.cfg.Token))
	}
	a.server = &http.Server{
		Handler:           handlers.AnswerHead(router),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // event streams clear it for themselves
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.tls = tlsConfig != nil
	// Open streams would hold Shutdown up: close them first.
	a.server.RegisterOnShutdown(a.hub.Close)
}

// The feeds read their counts and rows through the broker's Ordered.
var _ live.Ordered = (*broker.Broker)(nil)

// Addr is the address the server listens on (useful with port 0).
func (a *App) Addr() string { return a.ln.Addr().String() }

// URL is the server's base address: https:// when it serves TLS.
func (a *App) URL() string {
	if a.tls {
		return "https://" + a.Addr()
	}
	return "http://" + a.Addr()
}

// Run serves until ctx ends, then shuts down in order: HTTP (closing event
// streams first), the job engine (running jobs get the grace period), the
// simulation, the collector and the feeds, and the database.
func (a *App) Run(ctx context.Context) error {
	// With the node's logger, as every line: with several nodes, which one
	// serves where is the first thing to read.
	a.log.Info("phonehome is listening", "url", a.URL(), "db", store.Redact(a.cfg.DB), "version", Version())
	serveErr := make(chan error, 1)
	go func() {
		if a.tls {
			// The certificate is in TLSConfig; ServeTLS adds HTTP/2 by ALPN.
			serveErr <- a.server.ServeTLS(a.ln, "", "")
			return
		}
		serveErr <- a.server.Serve(a.ln)
	}()

	var err error
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		a.log.Info("shutting down", "grace", a.cfg.Grace)
	}
	deadline, cancel := context.WithTimeout(context.Background(), a.cfg.Grace)
	defer cancel()
	if serr := a.server.Shutdown(deadline); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
	}
	if serr := a.engine.Stop(deadline); serr != nil {
		err = errors.Join(err, serr)
	}
	a.close()
	a.log.Info("stopped")
	return err
}

// close releases what NewApp built, in reverse order; safe on a partial App.
func (a *App) close() {
	if a.ln != nil {
		a.ln.Close()
	}
	if a.engine != nil {
		// Stopped even if it never started: Stop also ends what New began.
		_ = a.engine.Stop(context.Background())
	}
	for i := len(a.started) - 1; i >= 0; i-- {
		_ = a.started[i].Stop(context.Background())
	}
	a.started = nil
	if a.hub != nil {
		a.hub.Close()
	}
	if a.store != nil {
		a.store.Close()
		a.store = nil
	}
	if a.unlock != nil {
		_ = a.unlock()
		a.unlock = nil
	}
}

// jobCounts counts the jobs per state, for the dashboard.
func (a *App) jobCounts(ctx context.Context) (map[string]int, error) {
	counts, err := a.engine.Counts(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(counts))
	for s, n := range counts {
		out[string(s)] = n
	}
	return out, nil
}

// throughput is the engine's finished jobs per second, for the dashboard.
func (a *App) throughput() []stats.ThroughputPoint {
	pts := a.engine.Throughput()
	out := make([]stats.ThroughputPoint, len(pts))
	for i, p := range pts {
		out[i] = stats.ThroughputPoint(p)
	}
	return out
}

// petFigures are LivePet's figures, for the dashboard.
func (a *App) petFigures() stats.PetFigures {
	c, t := a.pets.Counts(), a.pets.LastTick()
	return stats.PetFigures{
		Alive: c.Alive, Dead: c.Dead, Watched: a.pets.Watchers().Len(),
		TickAt: t.At, TickDuration: t.Duration, TickDied: t.Died, TickRendered: t.Rendered,
	}
}

// Node is this process's name among the nodes serving the database (the
// same in the logs, the job engine's attempted_by, the lease and the stats).
func (a *App) Node() string { return a.node }

// IsLeader reports whether this node leads the maintenance now: always on
// SQLite (one process per file); on PostgreSQL while it holds the lease.
// Leader-only work checks it before each step.
func (a *App) IsLeader() bool { return a.lease == nil || a.lease.IsLeader() }

// joinCluster builds this node's side of the maintenance lease on
// PostgreSQL (several nodes may serve the database; one at a time runs
// cron, pruning, count compaction and the pets' deaths). It returns the lease's runner (nil on SQLite)
// and the IsLeader hook for the engine and the pets (nil on SQLite:
// always). The lease logs its changes with the node's name.
func (a *App) joinCluster(st *store.Store, logger *slog.Logger) (runner, func() bool, error) {
	if st.Dialect != store.Postgres {
		return nil, nil, nil
	}
	l, err := cluster.NewLease(st.Writer, st.Dialect, "maintenance", a.node, 0, cluster.LeaseOptions{Logger: logger, Listener: a.listener})
	if err != nil {
		return nil, nil, err
	}
	a.lease = l
	return leaseRunner{l}, l.IsLeader, nil
}

// nodes lists the nodes serving the database for the stats, the leader
// marked: this node on SQLite, the lease's holder on PostgreSQL.
func (a *App) nodes(ctx context.Context) ([]stats.NodeInfo, error) {
	list, err := a.engine.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	leader := a.node
	if a.lease != nil {
		if leader, err = a.lease.Holder(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]stats.NodeInfo, len(list))
	for i, n := range list {
		out[i] = stats.NodeInfo{Name: n.Name, Host: n.Host, PID: n.PID, StartedAt: n.StartedAt, HeartbeatAt: n.HeartbeatAt,
			HeartbeatAge: n.Age, Leader: n.Name == leader}
	}
	return out, nil
}

// setDefaults fills the settings left out with the app's defaults.
func (cfg *Config) setDefaults() {
	if cfg.Backoff == nil {
		cfg.Backoff = jobs.ObanBackoff(nil)
	}
	if cfg.CountsEvery <= 0 {
		cfg.CountsEvery = 250 * time.Millisecond
	}
	if cfg.PetTick <= 0 {
		cfg.PetTick = pets.DefaultTick
	}
}
