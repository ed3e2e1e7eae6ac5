package views

import (
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/stats"
)

// TestDashboardMemoryNoteNamesTheDatabase: the Memory card says what the
// resident memory outside Go holds on the database the views draw for
// (SQLite's allocator is in the process; PostgreSQL is not), and says
// nothing of it when the resident memory is unknown.
func TestDashboardMemoryNoteNamesTheDatabase(t *testing.T) {
	snap := stats.Snapshot{Full: true, Memory: stats.Memory{RSS: 64 << 20, HeapInUse: 8 << 20, Outside: 20 << 20}}
	for _, c := range []struct {
		name, database string
		rss            uint64
		want, not      []string
	}{
		{"sqlite", "", 64 << 20, []string{"Outside Go is resident memory the Go runtime does not account for: the binary and SQLite's own allocator"},
			[]string{"PostgreSQL"}},
		{"postgres", "PostgreSQL", 64 << 20, []string{"Outside Go is resident memory the Go runtime does not account for: mostly the binary itself (PostgreSQL runs in its own server processes"},
			[]string{"SQLite"}},
		{"no rss", "PostgreSQL", 0, []string{"Resident memory is not available on this system"}, []string{"Outside Go is"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewWith(Options{Database: c.database})
			if err != nil {
				t.Fatal(err)
			}
			s := snap
			s.Memory.RSS = c.rss
			html, err := v.Fragment(PartialDashLive, NewDashboardLive(s, nil, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			card := string(html)
			if i, j := strings.Index(card, `id="dash-memory-h"`), strings.Index(card, `id="dash-gc-h"`); i >= 0 && j > i {
				card = card[i:j]
			} else {
				t.Fatalf("no Memory card:\n%s", html)
			}
			for _, w := range c.want {
				if !strings.Contains(card, w) {
					t.Errorf("the Memory card lacks %q:\n%s", w, card)
				}
			}
			for _, n := range c.not {
				if strings.Contains(card, n) {
					t.Errorf("the Memory card says %q:\n%s", n, card)
				}
			}
		})
	}
}
