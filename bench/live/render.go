package live

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
)

// runRender times GET / and its variants at the table's size.
func runRender(ctx context.Context, db string, o Options) ([]RenderResult, error) {
	s, err := startServer(ctx, db, 0.2, 0, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// Some rows in each status, so the filters have something to find.
	err = s.st.InTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE extraterrestrials SET communication_status = CASE id % 3
			WHEN 0 THEN 'phoning_home' WHEN 1 THEN 'space_taxi_on_the_way' ELSE 'no_answer' END,
			communication_attempt = 1, last_communication_attempt_at = 0 WHERE id % 10 = 0`)
		return err
	})
	if err != nil {
		return nil, err
	}
	deep := store.Cursor{Name: "Jubal-050000", ID: 499_997}
	// The searches: a substring served by the trigram index (few names
	// match), one that walks the name index (many match), and one name.
	variants := []struct{ name, path, q string }{
		{"first page", "/", ""},
		{"deep page (cursor)", "/?cursor=" + deep.String(), ""},
		{"status filter", "/?status=no_answer", ""},
		{"search, common", "/?q=korben-00", "korben-00"},
		{"search, very common", "/?q=kor", "kor"},
		{"search, rare", "/?q=" + store.GeneratedName(o.Rows-1), store.GeneratedName(o.Rows - 1)},
		{"rows fragment (resync)", "/extraterrestrials/rows", ""},
	}
	client := &http.Client{}
	var out []RenderResult
	for _, v := range variants {
		var times []time.Duration
		n := o.Renders
		if strings.HasPrefix(v.name, "search, rare") {
			n = max(5, n/20)
		}
		for range n {
			start := time.Now()
			if _, err := get(client, s.url+v.path); err != nil {
				return nil, err
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		rr := RenderResult{Name: v.name, Path: v.path, N: n, P50: times[len(times)/2],
			P99: times[min(len(times)-1, len(times)*99/100)], Max: times[len(times)-1]}
		if v.q != "" {
			// LIKE is what the page matches with (case-insensitive ASCII).
			err := s.st.Reader.GetContext(ctx, &rr.Matches, "SELECT count(*) FROM extraterrestrials WHERE name LIKE ?", "%"+v.q+"%")
			if err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(o.Log, "%s: p50 %v p99 %v\n", v.name, rr.P50, rr.P99)
		out = append(out, rr)
	}
	return out, nil
}
