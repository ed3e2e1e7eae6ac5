package views

import (
	"strings"
	"testing"
	"time"
)

// Every name the app renders has its template, and a name without one
// stops New: a misspelt name fails at start, not at first render.
func TestNewChecksEveryNameTheAppRenders(t *testing.T) {
	if _, err := New(); err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, tt := range []struct {
		name  string
		apply func() func()
		want  string
	}{
		{name: "page", want: `page "jobz"`, apply: func() func() {
			saved := allPages
			allPages = append(allPages[:len(allPages):len(allPages)], "jobz")
			return func() { allPages = saved }
		}},
		{name: "partial", want: `partial "job_rwo"`, apply: func() func() {
			saved := allPartials
			allPartials = append(allPartials[:len(allPartials):len(allPartials)], "job_rwo")
			return func() { allPartials = saved }
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			restore := tt.apply()
			defer restore()
			if _, err := New(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New with a misspelt %s = %v, want an error naming %s", tt.name, err, tt.want)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	const s, m, h = 1e9, 60e9, 3600e9
	for _, tt := range []struct {
		got, want string
	}{
		{Short(0), "0"}, {Short(850), "850 ns"}, {Short(12_300), "12.3 µs"}, {Short(1_234_567), "1.2 ms"}, {Short(3.4 * s), "3.4 s"},
		{Span(42 * s), "42 s"}, {Span(5*m + 3*s), "5 min 3 s"}, {Span(5 * m), "5 min"}, {Span(2*h + 5*m), "2 h 05 min"}, {Span(76 * h), "3 d 4 h"},
		{Lifetime(12 * s), "12 s"}, {Lifetime(5*m + 30*s), "5 min"}, {Lifetime(3*h + 25*m), "3 h 25 min"}, {Lifetime(47 * h), "47 h 0 min"}, {Lifetime(52 * h), "2 days 4 h"},
		{Relative(epoch.Add(12*s), epoch), "in 12 s"}, {Relative(epoch.Add(-3*m), epoch), "3 min ago"}, {Relative(epoch, epoch), "now"},
		{Relative(epoch.Add(-30*h), epoch), "30 h ago"}, {Relative(epoch.Add(72*h), epoch), "in 3 days"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
