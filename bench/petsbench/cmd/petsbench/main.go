// Command petsbench measures LivePet at a million pets on the real binary
// and writes the "LivePet (issue 4)" section of ../BENCHMARKS.md.
//
//	cd bench && go run ./petsbench/cmd/petsbench [-pets 1000000] [-watched 1000] [-feeds 200]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/mdreport"
	"github.com/phonehome/phonehome/bench/petsbench"
)

var root *string

func main() {
	pets := flag.Int("pets", 1_000_000, "pets to seed")
	watched := flag.Int("watched", 1000, "pet pages kept open")
	feeds := flag.Int("feeds", 200, "feed-to-event samples")
	tick := flag.Duration("tick", time.Second, "the server's -pet-tick")
	out := flag.String("out", "../BENCHMARKS.md", "file whose LivePet section is replaced (empty: print only)")
	root = flag.String("app", "..", "the phonehome module's folder, built with go build")
	flag.Parse()
	if err := run(*pets, *watched, *feeds, *tick, *out); err != nil {
		fmt.Fprintln(os.Stderr, "petsbench:", err)
		os.Exit(1)
	}
}

func run(pets, watched, feeds int, tick time.Duration, out string) error {
	dir, err := os.MkdirTemp("", "petsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "phonehome")
	// Built in the app's own module, with its own go.sum.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = *root
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build phonehome: %w", err)
	}
	res, err := petsbench.Run(context.Background(), petsbench.Options{
		Binary: bin, Dir: dir, Pets: pets, Watched: watched, Feeds: feeds, Tick: tick, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	section := table(res, pets, watched, tick)
	fmt.Print(section)
	if out == "" {
		return nil
	}
	return mdreport.WriteSection(out, "## LivePet (issue 4)", section)
}

func table(r petsbench.Results, pets, watched int, tick time.Duration) string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	check := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## LivePet (issue 4)\n\n")
	fmt.Fprintf(&b, "%s (`GOMAXPROCS` %d), %s. `cd bench && go run ./petsbench/cmd/petsbench`: the real binary, "+
		"%d pets seeded with `phonehome seed -pets`, the server started with `-pet-tick %s` (5× the default rate), %d pet pages "+
		"kept open (one event stream each), then %d feeds of newly adopted pets timed from the POST to the event showing the fed hunger.\n\n",
		mdreport.Machine(), runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02"), pets, tick, watched, len(r.FeedToEvent))
	b.WriteString("| figure | measured | target | met |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| seed %d pets (bulk insert) | %s | seconds | %s |\n", pets, r.Seed.Round(10*time.Millisecond), check(r.Seed < time.Minute))
	fmt.Fprintf(&b, "| start-up to serving | %s | < 5 s | %s |\n", ms(r.StartToServing), check(r.StartToServing < 5*time.Second))
	fmt.Fprintf(&b, "| resident memory, idle | %s | < 300 MB | %s |\n", mb(r.RSSIdle), check(r.RSSIdle < 300<<20))
	fmt.Fprintf(&b, "| resident memory, %d pages watched | %s | < 300 MB | %s |\n", watched, mb(r.RSSWatched), check(r.RSSWatched < 300<<20))
	fmt.Fprintf(&b, "| one tick, %d pets watched (p50 / max of %d) | %s / %s | < 100 ms | %s |\n", watched, len(r.Ticks),
		ms(petsbench.Percentile(r.Ticks, 50)), ms(petsbench.Percentile(r.Ticks, 100)), check(petsbench.Percentile(r.Ticks, 100) < 100*time.Millisecond))
	fmt.Fprintf(&b, "| feed-to-event p50 / p99 | %s / %s | p99 < 50 ms | %s |\n",
		ms(petsbench.Percentile(r.FeedToEvent, 50)), ms(petsbench.Percentile(r.FeedToEvent, 99)), check(petsbench.Percentile(r.FeedToEvent, 99) < 50*time.Millisecond))
	b.WriteString("| full persist of all pets | nothing to persist | < 10 s | n/a |\n\n")
	b.WriteString("Ticking writes nothing (age and hunger are derived from stored times; every action commits when it happens), " +
		"so there is no periodic persist to time: a tick is the death sweep plus rendering the watched pets. " +
		"In-process micro-benchmarks of the same paths: `go test -run '^$' -bench . -benchtime 20x ./pets/`.\n\n")
	return b.String()
}
