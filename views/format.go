package views

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// HumanTime formats a time for people: "22 Nov 2026, 04:15:03 UTC".
func HumanTime(t time.Time) string {
	return t.UTC().Format("2 Jan 2006, 15:04:05 MST")
}

// Thousands formats n with thin separators: 1234567 → "1,234,567".
func Thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Bytes formats a size in IEC units: 0 B, 512 B, 1.5 KiB, 12.3 MiB.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	prec := 1
	if v >= 100 {
		prec = 0
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + string("KMGTP"[exp]) + "iB"
}

// The durations: one family, each for one kind of figure, all built on
// the same split into days, hours, minutes and seconds.

// clock is d split into whole days, hours, minutes and seconds.
type clock struct{ days, hours, mins, secs int }

func split(d time.Duration) clock {
	return clock{
		days:  int(d / (24 * time.Hour)),
		hours: int(d % (24 * time.Hour) / time.Hour),
		mins:  int(d % time.Hour / time.Minute),
		secs:  int(d % time.Minute / time.Second),
	}
}

// Short formats a short measured duration: 0, 850 ns, 12 µs, 1.2 ms, 3.4 s.
func Short(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + " ns"
	case d < time.Millisecond:
		return threeDigits(float64(d)/float64(time.Microsecond)) + " µs"
	case d < time.Second:
		return threeDigits(float64(d)/float64(time.Millisecond)) + " ms"
	default:
		return threeDigits(d.Seconds()) + " s"
	}
}

func threeDigits(f float64) string {
	if f >= 100 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

// Span formats a stretch of time to the second: 42 s, 5 min 3 s,
// 2 h 05 min, 3 d 4 h (uptimes, chart windows).
func Span(d time.Duration) string {
	c := split(d.Round(time.Second))
	switch {
	case c.days > 0:
		return fmt.Sprintf("%d d %d h", c.days, c.hours)
	case c.hours > 0:
		return fmt.Sprintf("%d h %02d min", c.hours, c.mins)
	case c.mins > 0 && c.secs == 0:
		return fmt.Sprintf("%d min", c.mins)
	case c.mins > 0:
		return fmt.Sprintf("%d min %d s", c.mins, c.secs)
	default:
		return fmt.Sprintf("%d s", c.secs)
	}
}

// Lifetime formats a life's length in its largest units: 12 s, 5 min,
// 3 h 25 min, and days beyond two days (a pet's age and time left).
func Lifetime(d time.Duration) string {
	c := split(d)
	hours := c.days*24 + c.hours
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", c.secs)
	case d < time.Hour:
		return fmt.Sprintf("%d min", c.mins)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", hours, c.mins)
	}
	return fmt.Sprintf("%d days %d h", c.days, c.hours)
}

// Relative formats t against now in its largest unit: "now", "in 12 s",
// "3 min ago", "5 h ago", "in 3 days".
func Relative(t, now time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	c := split(d)
	var s string
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", c.secs)
	case d < time.Hour:
		s = fmt.Sprintf("%d min", c.mins)
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", c.days*24+c.hours)
	default:
		s = fmt.Sprintf("%d days", c.days)
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// Rate formats a per-second rate for the dashboard: 0, 0.25, 12.5, 1,234.
func Rate(f float64) string {
	switch {
	case f == 0:
		return "0"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 2, 64)
	case f < 100:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return Thousands(int(math.Round(f)))
	}
}

// PerSecond formats a chart's rate with its unit: 12/s, 2.5/s, 1,000/s.
func PerSecond(r float64) string {
	if r == float64(int(r)) {
		return Thousands(int(r)) + "/s"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
}
