package live

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/store"
)

// runCampaign: clients on different pages of the table (rendered by the
// real page, subscribed with its own stream URL) watch a Phone Home
// campaign; once it stops, every page must equal the database.
func runCampaign(ctx context.Context, db string, o Options) (*CampaignResult, error) {
	times := &commitTimes{at: map[int64]int64{}}
	s, err := startServer(ctx, db, 0.2, 0, times.record)
	if err != nil {
		return nil, err
	}
	defer s.close()
	type page struct {
		path string
		mu   sync.Mutex
		rows map[int64]string
	}
	var lat histogram
	var pagesMu sync.Mutex
	byIndex := map[int]*page{}
	p, err := newPoller(func(ev *event) {
		if ev.row == 0 || ev.name != "" {
			return
		}
		if at, ok := times.get(ev.row, ev.try); ok {
			lat.add(ev.at.Sub(time.Unix(0, at)))
		}
		pagesMu.Lock()
		pg := byIndex[ev.c.index]
		pagesMu.Unlock()
		pg.mu.Lock()
		if _, ok := pg.rows[ev.row]; ok {
			pg.rows[ev.row] = normalizeRow(dataOf(ev.data))
		}
		pg.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	defer p.close()

	// Pages near the start of each name (generated names are "Ayala-000001"
	// …, ids in name order step by 10), where the campaign calls first.
	client := &http.Client{}
	var pages []*page
	for i := range o.CampaignClients {
		group, n := i%len(store.SeedNames), i/len(store.SeedNames)
		path := "/"
		if n > 0 || group > 0 {
			num := n * 100 // the page starts after this row number of its name
			cur := store.Cursor{Name: fmt.Sprintf("%s-%06d", store.SeedNames[group], num), ID: int64(max(num-1, 0)*10 + group + 1)}
			path = "/?cursor=" + cur.String()
		}
		body, err := get(client, s.url+path)
		if err != nil {
			return nil, err
		}
		pg := &page{path: path, rows: rowsOf(body)}
		stream := streamOf(body)
		if stream == "" || len(pg.rows) == 0 {
			return nil, fmt.Errorf("page %s: stream %q, %d rows", path, stream, len(pg.rows))
		}
		pagesMu.Lock()
		byIndex[i] = pg
		pagesMu.Unlock()
		pages = append(pages, pg)
		if _, err := p.dial(s.port, stream, i); err != nil {
			return nil, err
		}
	}
	if err := s.waitClients(ctx, len(pages), time.Minute); err != nil {
		return nil, err
	}
	r := &CampaignResult{Clients: len(pages)}
	start := time.Now()
	n, err := speakandspell.PhoneHome(ctx, s.engine)
	if err != nil {
		return nil, err
	}
	r.EnqueueTime, r.Enqueued = time.Since(start), n
	fmt.Fprintf(o.Log, "Phone Home enqueued %d calls in %v\n", n, r.EnqueueTime.Round(time.Millisecond))
	begin := time.Now()
	if err := s.runEngine(ctx, o.CampaignDuration); err != nil {
		return nil, err
	}
	r.Attempts = times.n.Load()
	r.AttemptsPerS = float64(r.Attempts) / time.Since(begin).Seconds()

	// The last events arrive; then every page must show the database.
	settle := time.Now().Add(10 * time.Second)
	for {
		stale, watched, changed := 0, 0, 0
		for _, pg := range pages {
			body, err := get(client, s.url+pg.path)
			if err != nil {
				return nil, err
			}
			want := rowsOf(body)
			pg.mu.Lock()
			for id, row := range want {
				watched++
				if strings.Contains(row, "<time") {
					changed++
				}
				if pg.rows[id] != row {
					stale++
				}
			}
			pg.mu.Unlock()
		}
		r.RowsWatched, r.RowsChanged, r.Stale = watched, changed, stale
		if stale == 0 || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.close()
	r.CommitToClient = lat.summary()
	fmt.Fprintf(o.Log, "%d attempts (%.0f/s); %d rows watched, %d changed, %d stale; commit-to-client %+v\n",
		r.Attempts, r.AttemptsPerS, r.RowsWatched, r.RowsChanged, r.Stale, r.CommitToClient)
	return r, nil
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return string(body), nil
}

// rowsOf maps each row id of an HTML text to its row, normalised.
func rowsOf(text string) map[int64]string {
	out := map[int64]string{}
	for {
		i := strings.Index(text, `<tr id="extraterrestrial-`)
		if i < 0 {
			return out
		}
		text = text[i:]
		j := strings.Index(text, "</tr>")
		if j < 0 {
			return out
		}
		row := text[:j+5]
		text = text[j+5:]
		id := leadingInt([]byte(row[len(`<tr id="extraterrestrial-`):]))
		out[id] = normalizeRow(row)
	}
}

func normalizeRow(row string) string {
	return strings.Replace(row, ` hx-swap-oob="true"`, "", 1)
}

// streamOf is the page's sse-connect URL.
func streamOf(body string) string {
	_, rest, ok := strings.Cut(body, `sse-connect="`)
	if !ok {
		return ""
	}
	url, _, _ := strings.Cut(rest, `"`)
	return strings.ReplaceAll(url, "&amp;", "&")
}
