package jobs

import (
	"fmt"
	"strconv"
	"strings"
)

// DescribeSpec says a periodic job's spec in words, for the cron page:
// "every day at 09:00 UTC", "every 5 minutes", "every hour at minute 30
// UTC", "at 03:30 on Monday to Friday UTC". A spec it has no words for is
// returned as it is; it never fails.
func DescribeSpec(spec string) string {
	spec = strings.TrimSpace(spec)
	zone := "UTC"
	if rest, ok := strings.CutPrefix(spec, "CRON_TZ="); ok {
		zone, spec, _ = strings.Cut(rest, " ")
	} else if rest, ok := strings.CutPrefix(spec, "TZ="); ok {
		zone, spec, _ = strings.Cut(rest, " ")
	}
	spec = strings.TrimSpace(spec)
	switch spec {
	case "@yearly", "@annually":
		spec = "0 0 1 1 *"
	case "@monthly":
		spec = "0 0 1 * *"
	case "@weekly":
		spec = "0 0 * * 0"
	case "@daily", "@midnight":
		spec = "0 0 * * *"
	case "@hourly":
		spec = "0 * * * *"
	}
	f := strings.Fields(spec)
	if len(f) != 5 {
		return spec
	}
	mi, hour, dom, month, dow := f[0], f[1], f[2], f[3], f[4]
	var when string
	m, mOK := num(mi, 0, 59)
	h, hOK := num(hour, 0, 23)
	switch {
	case mOK && hOK:
		when = fmt.Sprintf("at %02d:%02d", h, m)
	case mOK && hour == "*":
		when = fmt.Sprintf("every hour at minute %02d", m)
	case mi == "*" && hour == "*":
		when = "every minute"
	case strings.HasPrefix(mi, "*/") && hour == "*":
		n, ok := num(mi[2:], 1, 59)
		if !ok {
			return spec
		}
		when = "every " + plural(n, "minute")
	case mOK && strings.HasPrefix(hour, "*/"):
		n, ok := num(hour[2:], 1, 23)
		if !ok {
			return spec
		}
		when = fmt.Sprintf("every %s at minute %02d", plural(n, "hour"), m)
	default:
		when = "at minute " + mi + " of hour " + hour
	}
	days := ""
	switch {
	case dom == "*" && dow == "*":
		if mOK && hOK {
			when = "every day " + when
		}
	case dom == "*":
		days = "on " + weekdays(dow)
	case dow == "*":
		days = "on day " + dom + " of the month"
	default:
		days = "on day " + dom + " of the month or on " + weekdays(dow)
	}
	if month != "*" {
		days = strings.TrimSpace(days + " in " + months(month))
	}
	out := when
	if days != "" {
		out += " " + days
	}
	return out + " " + zone
}

// num reads s as a whole number in lo…hi.
func num(s string, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= lo && n <= hi && strconv.Itoa(n) == s
}

func plural(n int, unit string) string {
	if n == 1 {
		return unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

var dayNames = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

var monthNames = []string{"", "January", "February", "March", "April", "May", "June", "July", "August",
	"September", "October", "November", "December"}

// weekdays names a day-of-week field: "Monday to Friday", "Saturday and
// Sunday"; parts it cannot name stay as they are.
func weekdays(s string) string { return names(s, dayNames, 0, 7) }

func months(s string) string { return names(s, monthNames, 1, 12) }

// names names a list of values and ranges of a cron field with names.
func names(s string, list []string, lo, hi int) string {
	parts := strings.Split(s, ",")
	out := make([]string, len(parts))
	for i, p := range parts {
		a, b, isRange := strings.Cut(p, "-")
		x, okA := num(a, lo, hi)
		if !isRange {
			if okA {
				out[i] = list[x]
			} else {
				out[i] = p
			}
			continue
		}
		y, okB := num(b, lo, hi)
		if okA && okB {
			out[i] = list[x] + " to " + list[y]
		} else {
			out[i] = p
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return strings.Join(out[:len(out)-1], ", ") + " and " + out[len(out)-1]
}
