package setting

import (
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want time.Duration
	}{
		{"left out", 0, time.Second},
		{"negative", -time.Millisecond, time.Second},
		{"given", time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.in
			Default(&v, time.Second)
			if v != tc.want {
				t.Fatalf("Default(%v) = %v, want %v", tc.in, v, tc.want)
			}
		})
	}
}
