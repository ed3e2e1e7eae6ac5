package pets_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const T = 5 * time.Second

// at is the instant k ticks (plus some) after epoch.
func at(k int, plus time.Duration) time.Time { return epoch.Add(time.Duration(k)*T + plus) }

func TestStateDerivesAgeAndHunger(t *testing.T) {
	t.Parallel()
	r := pets.Rules{Tick: T}
	newborn := store.Pet{ID: 1, BornAt: epoch, HungerBase: 250, HungerAt: epoch}
	fed := store.Pet{ID: 2, BornAt: epoch, HungerBase: 0, HungerAt: at(100, 4*time.Second)} // fed late in tick 100
	lifespan := r.Lifespan()
	tests := []struct {
		name       string
		pet        store.Pet
		now        time.Time
		age, hung  int
		alive      bool
		wantDiedAt time.Time
	}{
		{"at birth", newborn, epoch, 0, 250, true, time.Time{}},
		{"just before the first tick", newborn, at(1, -time.Millisecond), 0, 250, true, time.Time{}},
		{"first tick", newborn, at(1, 0), 1, 255, true, time.Time{}},
		{"ten ticks", newborn, at(10, 2*time.Second), 10, 300, true, time.Time{}},
		{"hunger reaches the cap", newborn, at(50, 0), 50, 500, true, time.Time{}},
		{"hunger stays capped", newborn, at(5000, 0), 5000, 500, true, time.Time{}},
		{"clock before birth", newborn, epoch.Add(-time.Hour), 0, 250, true, time.Time{}},
		{"fed: counts the pet's own ticks since", fed, at(101, 0), 101, 5, true, time.Time{}},
		{"fed: same tick", fed, at(100, 4500*time.Millisecond), 100, 0, true, time.Time{}},
		{"fed: 3 ticks on", fed, at(103, time.Second), 103, 15, true, time.Time{}},
		{"age 10,000: still alive", newborn, at(pets.LifeTicks, T-time.Millisecond), pets.LifeTicks, 500, true, time.Time{}},
		{"age passes 10,000: dead at that instant", newborn, epoch.Add(lifespan), pets.LifeTicks + 1, 500, false, epoch.Add(lifespan)},
		{"dead: age frozen", newborn, epoch.Add(lifespan + 72*time.Hour), pets.LifeTicks + 1, 500, false, epoch.Add(lifespan)},
		{"dead: hunger frozen", store.Pet{BornAt: epoch, HungerBase: 0, HungerAt: at(10000, 0)}, epoch.Add(lifespan + time.Hour), pets.LifeTicks + 1, 5, false, epoch.Add(lifespan)},
		{"death recorded by the sweep", store.Pet{BornAt: epoch, HungerBase: 100, HungerAt: epoch, DiedAt: epoch.Add(lifespan)}, epoch.Add(lifespan + time.Hour), pets.LifeTicks + 1, 500, false, epoch.Add(lifespan)},
	}
	for _, tt := range tests {
		s := r.State(tt.pet, tt.now)
		if s.Age != tt.age || s.Hunger != tt.hung || s.Alive != tt.alive || !s.DiedAt.Equal(tt.wantDiedAt) {
			t.Errorf("%s: age %d hunger %d alive %v died %v; want %d %d %v %v", tt.name, s.Age, s.Hunger, s.Alive, s.DiedAt, tt.age, tt.hung, tt.alive, tt.wantDiedAt)
		}
		if !s.DiesAt.Equal(tt.pet.BornAt.Add(lifespan)) {
			t.Errorf("%s: dies at %v", tt.name, s.DiesAt)
		}
	}
	if got := r.Lifespan(); got != 10001*T {
		t.Errorf("lifespan %v", got)
	}
}

func TestHearts(t *testing.T) {
	t.Parallel()
	tests := []struct{ hunger, filled int }{
		{0, 5}, {1, 5}, {100, 4}, {101, 4}, {199, 4}, {200, 3}, {250, 3}, {300, 2}, {400, 1}, {450, 1}, {499, 1}, {500, 0},
	}
	for _, tt := range tests {
		if got := pets.FilledHearts(tt.hunger); got != tt.filled {
			t.Errorf("hunger %d: %d hearts, want %d", tt.hunger, got, tt.filled)
		}
		h := pets.State{Hunger: tt.hunger}.Hearts()
		n := 0
		for i, full := range h {
			if full {
				n++
				if i > 0 && !h[i-1] {
					t.Errorf("hunger %d: full hearts not first: %v", tt.hunger, h)
				}
			}
		}
		if len(h) != 5 || n != tt.filled {
			t.Errorf("hunger %d: hearts %v", tt.hunger, h)
		}
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"3 characters", "Rex", "Rex", true},
		{"2 characters", "Re", "", false},
		{"trimmed to 2", "  Re  ", "", false},
		{"trimmed", "  Mochi\t", "Mochi", true},
		{"100 characters", strings.Repeat("ü", 100), strings.Repeat("ü", 100), true},
		{"101 characters", strings.Repeat("ü", 101), "", false},
		{"markup is kept as written", "<script>alert(1)</script>", "<script>alert(1)</script>", true},
		{"line break", "Mo\nchi", "", false},
		{"right-to-left script", "שלום עולם", "שלום עולם", true},
		{"right-to-left override", "Mochi \u202eevil", "", false},
		{"left-to-right isolate", "Mo\u2066chi", "", false},
		{"pop directional isolate", "Mochi\u2069", "", false},
		{"right-to-left mark", "Mo\u200fchi", "", false},
		{"Arabic letter mark", "Mo\u061cchi", "", false},
		{"invalid UTF-8", "Mo\xffchi", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		got, err := pets.ValidName(tt.in)
		var ve *pets.ValidationError
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("%s: %q, %v", tt.name, got, err)
		}
		if !tt.ok && (!errors.As(err, &ve) || ve.Field != "name" || ve.Message == "") {
			t.Errorf("%s: accepted as %q (%v)", tt.name, got, err)
		}
	}
	if _, err := pets.ValidSpecies("dragon"); err == nil {
		t.Error("dragon accepted")
	}
	if sp, err := pets.ValidSpecies("crab"); err != nil || sp != store.SpeciesCrab {
		t.Errorf("crab: %v %v", sp, err)
	}
}

func TestStreamNames(t *testing.T) {
	t.Parallel()
	if pets.Stream(42) != "pet-42" {
		t.Errorf("stream %q", pets.Stream(42))
	}
	tests := []struct {
		name string
		id   int64
		ok   bool
	}{
		{"pet-42", 42, true}, {"pet-1", 1, true},
		{"pet-", 0, false}, {"pet-0", 0, false}, {"pet-042", 0, false}, {"pet--1", 0, false}, {"pet-+1", 0, false},
		{"pet-1x", 0, false}, {"pets", 0, false}, {"extraterrestrials", 0, false}, {"pet-99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		id, ok := pets.ParseStream(tt.name)
		if id != tt.id || ok != tt.ok {
			t.Errorf("%q: %d %v", tt.name, id, ok)
		}
	}
}

func TestTreatsRefill(t *testing.T) {
	t.Parallel()
	if got := pets.TreatsOf(store.Keeper{}, epoch); got.Left != 5 || !got.RefillAt.IsZero() {
		t.Errorf("no keeper row: %+v", got)
	}
	k := store.Keeper{ID: "k", TreatsLeft: 2, WindowStart: epoch}
	if got := pets.TreatsOf(k, epoch.Add(29*time.Minute)); got.Left != 2 || !got.RefillAt.Equal(epoch.Add(30*time.Minute)) {
		t.Errorf("within the window: %+v", got)
	}
	if got := pets.TreatsOf(k, epoch.Add(30*time.Minute)); got.Left != 5 || !got.RefillAt.IsZero() {
		t.Errorf("after the window: %+v", got)
	}
	// A full budget has no window running: the next treat starts one.
	full := store.Keeper{ID: "k", TreatsLeft: 5, WindowStart: epoch}
	if got := pets.TreatsOf(full, epoch.Add(10*time.Minute)); got.Left != 5 || !got.RefillAt.IsZero() {
		t.Errorf("full budget: %+v", got)
	}
}
