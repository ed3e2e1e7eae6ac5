// Command phonehome is the Phone Home demo as one Go binary: extraterrestrials
// phone home through a durable job queue with retries, and every status
// change reaches every open browser live over server-sent events. The
// database is a SQLite file (the default) or PostgreSQL (-db postgres://…):
// every command works on both.
//
// Usage:
//
//	phonehome [serve] [flags]    run the server (the default)
//	phonehome migrate [-force V] apply migrations and exit
//	phonehome seed [-ets N] [-pets N]  add extraterrestrials / pets
//	phonehome reset              drop everything, migrate, seed
//	phonehome version            print the version
//
// Every flag also reads PHONEHOME_<FLAG> from the environment (upper case,
// "-" → "_"); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a bad command line: one line on stderr, exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "phonehome: %s\n", oneLine(ue.msg))
		return 2
	default:
		fmt.Fprintf(stderr, "phonehome: %s\n", oneLine(err.Error()))
		return 1
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseServe(args, stderr)
		if err != nil {
			return err
		}
		return serveCmd(cfg, stderr)
	case "migrate":
		fs, db := newFlagSet("migrate", stderr)
		force := fs.Int("force", -1, "mark the schema as clean at version `V` without running anything (after repairing a dirty migration by hand)")
		if err := parseDBFlags(fs, db, args); err != nil {
			return err
		}
		return migrateCmd(*db, *force, stdout)
	case "seed":
		fs, db := newFlagSet("seed", stderr)
		ets := fs.Int("ets", 0, "add `N` generated extraterrestrials (at most 10,000,000 a run)")
		petCount := fs.Int("pets", 0, "add `N` generated pets, of all ages (at most 10,000,000 a run)")
		tick := fs.Duration("pet-tick", pets.DefaultTick, "the LivePet tick the pets' ages are spread over")
		if err := parseDBFlags(fs, db, args); err != nil {
			return err
		}
		if err := checkSeedCount("ets", *ets); err != nil {
			return err
		}
		if err := checkSeedCount("pets", *petCount); err != nil {
			return err
		}
		if *tick < time.Millisecond {
			return usageError{"invalid value for -pet-tick: must be at least 1ms"}
		}
		return seedCmd(*db, *ets, *petCount, *tick, stdout)
	case "reset":
		fs, db := newFlagSet("reset", stderr)
		if err := parseDBFlags(fs, db, args); err != nil {
			return err
		}
		return resetCmd(*db, stdout)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "phonehome", Version())
		return nil
	case "help":
		printUsage(stderr)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q: want serve, migrate, seed, reset or version", cmd)}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: phonehome [serve] [flags] | migrate [-force V] | seed [-ets N] [-pets N] | reset | version
Run "phonehome serve -h" for the server's flags. Every flag also reads PHONEHOME_<FLAG>.
`)
}

// newFlagSet makes a subcommand's flag set with the shared -db flag.
func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "phonehome.db", "SQLite database `file` (created and migrated if missing), or a postgres:// URL (migrated if needed)")
	return fs, db
}

// parseDBFlags is parseFlags for a command with -db (newFlagSet's), which
// must not be empty.
func parseDBFlags(fs *flag.FlagSet, db *string, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *db == "" {
		return usageError{"-db: must not be empty: give a SQLite file (such as phonehome.db) or a postgres:// URL"}
	}
	return nil
}

// parseFlags parses the command line, then fills every flag not given there
// from PHONEHOME_<FLAG>. Errors are one line naming the flag or variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var out strings.Builder
	realOut := fs.Output()
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(realOut)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(realOut, "usage of phonehome %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageError{fmt.Sprintf("invalid value %q for %s: %v", v, name, err)}
			}
		}
	})
	return envErr
}

// EnvName is the environment variable read for a flag: -answer-rate →
// PHONEHOME_ANSWER_RATE.
func EnvName(flagName string) string {
	return "PHONEHOME_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseServe reads and checks the server's flags.
func parseServe(args []string, stderr io.Writer) (Config, error) {
	fs, db := newFlagSet("serve", stderr)
	cfg := Config{}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen `address`")
	backoff := fs.String("backoff", "oban", "retry delay: `oban` (15 s + 2^attempt s + 0–10 % jitter) or a duration used for every retry (0s, 200ms)")
	fs.Float64Var(&cfg.AnswerRate, "answer-rate", 0.2, "probability (0…1) that one phone call connects")
	fs.DurationVar(&cfg.Poll, "poll", time.Second, "how often idle workers look for due jobs")
	fs.DurationVar(&cfg.Grace, "grace", 15*time.Second, "how long running jobs may finish at shutdown")
	fs.DurationVar(&cfg.PruneAfter, "prune-after", 24*time.Hour, "how long completed, cancelled and discarded jobs are kept (negative: forever)")
	fs.DurationVar(&cfg.PetTick, "pet-tick", pets.DefaultTick, "LivePet tick: pets age one tick and get 5 hungrier each")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&cfg.Token, "token", "", "access `token` every request must carry; required when -addr is not a loopback address")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS (and HTTP/2) with the certificate in `file` (PEM; with -tls-key)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the private key of -tls-cert, in `file` (PEM)")
	fs.Var((*hostList)(&cfg.AllowHosts), "allow-host", "also answer to the host `name` (repeatable, or comma-separated); the bound address, localhost and loopback addresses always work")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the server to `file` (for go tool pprof), complete at shutdown")
	fs.BoolVar(&cfg.ReadOnly, "read-only", false, "the jobs dashboard and its API show everything and refuse every action (403)")
	fs.StringVar(&cfg.Node, "node", "", "this process's `name` among the nodes serving one database, in logs, /api/stats, /metrics and the jobs dashboard (default: host/pid/random)")
	syncMode := fs.String("sync", string(store.SyncNormal), "SQLite durability: `normal` (a commit survives kill -9) or full (it also survives a power cut); PostgreSQL ignores it (its server's settings decide)")
	if err := parseDBFlags(fs, db, args); err != nil {
		return cfg, err
	}
	cfg.DB = *db
	sync, err := store.ParseSync(*syncMode)
	if err != nil {
		return cfg, usageError{"-sync: " + err.Error()}
	}
	cfg.Sync = sync
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, usageError{"-tls-cert and -tls-key go together: give both files, or neither for plain HTTP"}
	}
	b, err := jobs.ParseBackoff(*backoff)
	if err != nil {
		return cfg, usageError{"-backoff: " + err.Error()}
	}
	cfg.Backoff = b
	if cfg.AnswerRate < 0 || cfg.AnswerRate > 1 || cfg.AnswerRate != cfg.AnswerRate {
		return cfg, usageError{fmt.Sprintf("-answer-rate: %v is not a probability between 0 and 1", cfg.AnswerRate)}
	}
	if cfg.Poll <= 0 {
		return cfg, usageError{"-poll: must be a positive duration such as 1s or 250ms"}
	}
	if cfg.Grace < 0 {
		return cfg, usageError{"-grace: must not be negative"}
	}
	if cfg.PruneAfter == 0 {
		return cfg, usageError{"-prune-after: must not be 0; use a negative duration to keep finished jobs forever"}
	}
	if cfg.PetTick < time.Millisecond {
		return cfg, usageError{"-pet-tick: must be at least 1ms"}
	}
	if err := checkAddr(cfg.Addr); err != nil {
		return cfg, usageError{fmt.Sprintf("-addr %q: %v", cfg.Addr, err)}
	}
	if err := checkExposure(cfg.Addr, cfg.Token); err != nil {
		return cfg, usageError{err.Error()}
	}
	if err := checkNodeName(cfg.Node); err != nil {
		return cfg, usageError{"-node: " + err.Error()}
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, usageError{fmt.Sprintf("-log-level: %q is not one of debug, info, warn, error", *logLevel)}
	}
	return cfg, nil
}

// checkAddr refuses a listen address that net.Listen would refuse or
// read otherwise than meant: not host:port, a port that is not a number
// from 0 to 65535 (0 picks a free port; a service name such as "http" is
// not taken), or a host that is neither an IP address nor a plausible host
// name. An empty host means every interface.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not host:port (such as 127.0.0.1:8080)")
	}
	if port == "" {
		return errors.New("the port is missing (such as 127.0.0.1:8080)")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" || plausibleHost(host) {
		return nil
	}
	return fmt.Errorf("host %q is neither an IP address nor a host name", host)
}

// plausibleHost reports whether host is an IP address (an IPv6 one may
// carry a zone) or a host name by RFC 1123: dot-separated labels of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen, 253
// characters in all, the last label not all digits (RFC 3696), so that
// 999.1.1.1 is no name.
func plausibleHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// checkNodeName refuses a -node the tables and logs cannot carry: the
// job engine's attempted_by and the lease allow 200 bytes, and a control
// character would break a log line. Empty means the default name.
func checkNodeName(name string) error {
	if len(name) > 200 {
		return fmt.Errorf("%d bytes; at most 200", len(name))
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("%q has a control character or invalid UTF-8", name)
		}
	}
	return nil
}

// hostList is the -allow-host flag: names given one per flag, or
// separated by commas.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if strings.ContainsAny(name, "/:@ ") {
			return fmt.Errorf("%q is not a host name (give the name alone, without scheme or port)", name)
		}
		*h = append(*h, name)
	}
	return nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// serveCmd runs the server until SIGINT or SIGTERM.
func serveCmd(cfg Config, stderr io.Writer) error {
	logger := newLogger(stderr, cfg.LogLevel)
	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	// One socket per live client: ten thousand clients need more files
	// than the usual soft limit of 1,024 (Go raises it already; this says so).
	if before, after, err := events.RaiseOpenFileLimit(); err != nil {
		logger.Warn("could not raise the open-file limit", "limit", before, "err", err)
	} else if after < 16384 {
		logger.Warn("open-file limit is low for many live clients (one socket each)", "limit", after)
	} else {
		logger.Debug("open-file limit", "before", before, "after", after)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := NewApp(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

// startCPUProfile profiles the whole process into path until the
// returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
