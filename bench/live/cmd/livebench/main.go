// Command livebench runs phonehome's live-at-scale benchmark (issue 5) and
// prints its Markdown tables: go run ./live/cmd/livebench from bench/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/phonehome/phonehome/bench/live"
)

func main() {
	var o live.Options
	var scenarios string
	flag.StringVar(&o.Dir, "dir", "", "folder that keeps the generated database between runs (a temp folder if empty)")
	flag.IntVar(&o.Rows, "rows", 1_000_000, "extraterrestrials in the table")
	flag.StringVar(&scenarios, "scenarios", "render,full,pages,campaign", "scenarios to run, comma-separated")
	flag.IntVar(&o.FullClients, "full-clients", 1000, "clients of the whole stream")
	flag.IntVar(&o.FullRate, "full-rate", 1000, "rows changed per second in the whole-stream scenario")
	flag.DurationVar(&o.FullDuration, "full-duration", 15*time.Second, "length of the whole-stream scenario")
	flag.IntVar(&o.PageClients, "page-clients", 10_000, "clients each watching one page")
	flag.IntVar(&o.PageSize, "page-size", 50, "rows per watched page")
	flag.DurationVar(&o.PageDuration, "page-duration", 20*time.Second, "length of the campaign watched by page clients")
	flag.IntVar(&o.CampaignClients, "campaign-clients", 100, "clients on different pages during a campaign")
	flag.DurationVar(&o.CampaignDuration, "campaign-duration", 30*time.Second, "how long the campaign runs before pages are compared with the database")
	flag.DurationVar(&o.FlushEvery, "flush-every", 0, "the hub's shortest interval between two writes to one client (its default when 0)")
	flag.IntVar(&o.Renders, "renders", 200, "renders per page variant")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and clients) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "livebench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "livebench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	o.Scenarios = strings.Split(scenarios, ",")
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := live.Run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "livebench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
