package live

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

// report writes the results as Markdown.
func report(w io.Writer, r Results) {
	fmt.Fprintf(w, "Run %s on %s; table of %d extraterrestrials", r.Date.Format("2006-01-02 15:04 MST"), r.Machine, r.Rows)
	if r.SeedTime > 0 {
		fmt.Fprintf(w, " (generated in %.1f s)", r.SeedTime.Seconds())
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w)
	if len(r.Render) > 0 {
		fmt.Fprintf(w, "| page at %s rows | p50 | p99 | max |\n", grouped(int64(r.Rows)))
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, x := range r.Render {
			matches := ""
			if strings.HasPrefix(x.Name, "search") {
				matches = fmt.Sprintf(", %d matching", x.Matches)
			}
			fmt.Fprintf(w, "| %s (`%s`, n=%d%s) | %s | %s | %s |\n", x.Name, truncate(x.Path, 40), x.N, matches, ms(x.P50), ms(x.P99), ms(x.Max))
		}
		fmt.Fprintln(w)
	}
	if f := r.Full; f != nil {
		fmt.Fprintln(w, "| whole stream | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| clients × rows changed per second | %d × %d |\n", f.Clients, f.Rate)
		fmt.Fprintf(w, "| changes; events delivered; missing; clients cut | %d; %d; %d; %d |\n", f.Changes, f.Delivered, f.Missing, f.ClientsCut)
		fmt.Fprintf(w, "| publish-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(f.PublishToClient.P50), ms(f.PublishToClient.P99), ms(f.PublishToClient.Max))
		fmt.Fprintf(w, "| commit-to-publish (in the server) p50 / p99 / max | %s / %s / %s |\n", ms(f.CommitToPublish.P50), ms(f.CommitToPublish.P99), ms(f.CommitToPublish.Max))
		fmt.Fprintf(w, "| commit-to-client (one more whole-stream client, in the server's process) p50 / p99 / max | %s / %s / %s |\n", ms(f.CommitToClient.P50), ms(f.CommitToClient.P99), ms(f.CommitToClient.Max))
		fmt.Fprintf(w, "| CPU (cores): server process; client process | %.2f; %.2f |\n", f.ServerCPU, f.ClientCPU)
		fmt.Fprintf(w, "| write system calls per event per client | %.3f |\n", f.WritesPerEvent)
		fmt.Fprintf(w, "| memory per idle client: Go heap+stacks; RSS | %.1f KB; %.1f KB |\n", kb(f.HeapPerClient), kb(f.RSSPerClient))
		fmt.Fprintln(w)
	}
	if pg := r.Pages; pg != nil {
		fmt.Fprintln(w, "| pages of the table | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| clients × rows each | %d × %d (connected in %.1f s) |\n", pg.Clients, pg.PageSize, pg.ConnectTime.Seconds())
		fmt.Fprintf(w, "| memory per idle client: Go heap+stacks; RSS | %.1f KB; %.1f KB |\n", kb(pg.HeapPerClient), kb(pg.RSSPerClient))
		fmt.Fprintf(w, "| goroutines, all clients connected and idle | %d |\n", pg.Goroutines)
		fmt.Fprintf(w, "| campaign attempts; row events delivered; counts events delivered; clients cut | %d; %d; %d; %d |\n", pg.Attempts, pg.Delivered, pg.CountsDelivered, pg.ClientsCut)
		fmt.Fprintf(w, "| publish-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(pg.PublishToClient.P50), ms(pg.PublishToClient.P99), ms(pg.PublishToClient.Max))
		fmt.Fprintf(w, "| commit-to-publish (in the server) p50 / p99 / max | %s / %s / %s |\n", ms(pg.CommitToPublish.P50), ms(pg.CommitToPublish.P99), ms(pg.CommitToPublish.Max))
		fmt.Fprintf(w, "| server CPU (cores, engine included) | %.2f |\n", pg.ServerCPU)
		fmt.Fprintln(w)
	}
	if c := r.Campaign; c != nil {
		fmt.Fprintln(w, "| pages during a campaign | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| Phone Home over the table | %d calls enqueued in %.2f s |\n", c.Enqueued, c.EnqueueTime.Seconds())
		fmt.Fprintf(w, "| engine | %d attempts, %.0f attempts/s |\n", c.Attempts, c.AttemptsPerS)
		fmt.Fprintf(w, "| clients (each a different page) | %d |\n", c.Clients)
		fmt.Fprintf(w, "| rows shown; changed by the campaign; stale at the end | %d; %d; **%d** |\n", c.RowsWatched, c.RowsChanged, c.Stale)
		fmt.Fprintf(w, "| commit-to-client latency p50 / p99 / max | %s / %s / %s |\n", ms(c.CommitToClient.P50), ms(c.CommitToClient.P99), ms(c.CommitToClient.Max))
		fmt.Fprintln(w)
	}
}

func kb(b int64) float64 { return float64(b) / 1024 }

// grouped writes n with thousands separators (1,000,000).
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
