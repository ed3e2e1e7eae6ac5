package jobs_test

import (
	"strings"
	"testing"

	"github.com/phonehome/phonehome/jobs"
)

// FuzzCronSpec: any periodic job spec is accepted or refused with a
// one-line error naming it; none makes New panic (robfig/cron v3.0.1 does
// on a time zone with no schedule).
func FuzzCronSpec(f *testing.F) {
	for _, seed := range []string{
		"*/5 * * * *", "0 9 * * 1-5", "@hourly", "@daily", "@every 1m", "CRON_TZ=Europe/Paris 0 9 * * *",
		"CRON_TZ=UTC", "TZ=", "TZ=UTC", "TZ=UTC ", "CRON_TZ=Nowhere/City 0 0 * * *", "", " ", "* * * *",
		"60 * * * *", "0 0 31 2 *", "@yearly", "@reboot", "1-2-3 * * * *", "*/0 * * * *", "\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		_, err := jobs.New(nil, jobs.Config{
			Queues:   map[string]int{"default": 1},
			Periodic: []jobs.PeriodicJob{{Spec: spec, Args: testArgs{Name: "cron"}}},
		})
		if err != nil && strings.Contains(err.Error(), "\n") && !strings.Contains(spec, "\n") {
			t.Errorf("spec %q: error of more than one line: %q", spec, err)
		}
	})
}
