package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// A search finds the names containing its text, ignoring ASCII case,
// whether the trigram index serves it (three characters or more, few
// matches) or the name index does (short, wildcard characters, or common):
// the results are the same as a plain scan's, in name order, and stay so
// as names are added, renamed and deleted.
func TestSearchByNameMatchesAScan(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T, ctx context.Context, st *store.Store) {
		if err := st.GenerateExtraterrestrials(ctx, 3000); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Zed ÜNÏcode", "zed ünïcode", "100% Korben", "under_score", `back\slash`, "KoRbEn the Great"} {
			if _, err := st.Writer.ExecContext(ctx, st.Rebind("INSERT INTO extraterrestrials (name) VALUES (?)"), name); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Writer.ExecContext(ctx, "UPDATE extraterrestrials SET name = 'Renamed Korben' WHERE id = 8"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Writer.ExecContext(ctx, "DELETE FROM extraterrestrials WHERE id = 18"); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"korben", "KORBEN the", "Renamed", "ünï", "ÜNÏ", "ed", "% K", "_sc", `k\s`, "0001", "nomatch", "orb", "a\x00b", "\x00", "\xffkor", "kor\xff"} {
			var want []string
			var names []string
			if err := st.Reader.SelectContext(ctx, &names, "SELECT name FROM extraterrestrials ORDER BY name, id"); err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if strings.Contains(store.ASCIILower(n), store.ASCIILower(q)) {
					want = append(want, n)
				}
			}
			var got []string
			f := store.ExtraterrestrialFilter{Query: q, Limit: 1000}
			for {
				page, next, err := st.ListExtraterrestrials(ctx, f)
				if err != nil {
					t.Fatalf("q=%q: %v", q, err)
				}
				for _, et := range page {
					got = append(got, et.Name)
				}
				if next.IsZero() {
					break
				}
				f.After = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("q=%q: %d names %.5q…, want %d %.5q…", q, len(got), got, len(want), want)
			}
		}
	})
}
