// Package pets is LivePet: virtual pets that grow older and hungrier every
// tick until they die, fed by their keepers and given treats by others.
//
// No pet has a goroutine, and ticking writes nothing. A pet's row stores its
// birth and its last meal; its age and hunger at any instant are derived from
// those times and the tick length (Rules). A pet's own tick count at time t is
// n(t) = ⌊(t − born_at) / T⌋, so every pet ticks on its own phase, as each
// pet process of the original did. The database changes only when someone
// acts (adopt, feed, treat: one write transaction each, committed before the
// answer) and once when a pet dies, so there is nothing to persist
// periodically and nothing a crash can lose.
//
// The Sim does what needs a clock: every tick it records the deaths that came
// due and renders the live state of the pets somebody is watching (Watchers,
// fed by the event hub), and it tells every watched page which other pets are
// being watched. A pet nobody watches costs nothing.
package pets

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phonehome/phonehome/store"
)

// The original LivePet's rules.
const (
	// LifeTicks is the age a pet may reach: it dies when its age passes it.
	LifeTicks = 10_000
	// MaxHunger caps hunger; hunger never kills.
	MaxHunger = 500
	// HungerPerTick is how much hungrier a pet gets every tick.
	HungerPerTick = 5
	// NewbornHunger is a new pet's hunger.
	NewbornHunger = 250
	// FeedAmount is how much a feed takes off hunger (down to 0).
	FeedAmount = 100
	// TreatAmount is how much a treat takes off hunger (down to 0).
	TreatAmount = 20
	// TreatsPerWindow is every keeper's treat budget…
	TreatsPerWindow = 5
	// TreatWindow …refilled this long after the window's first treat.
	TreatWindow = 30 * time.Minute
	// Hearts is how many hearts show hunger.
	Hearts = 5
	// MinNameLength and MaxNameLength bound a name, in characters.
	MinNameLength, MaxNameLength = 3, 100
)

// DefaultTick is the original's tick.
const DefaultTick = 5 * time.Second

// Rules derive a pet's state from its stored times.
type Rules struct {
	// Tick is the length of one tick (T).
	Tick time.Duration
}

// Lifespan is how long a pet lives: it dies when its age passes LifeTicks,
// at the start of tick LifeTicks+1.
func (r Rules) Lifespan() time.Duration { return (LifeTicks + 1) * r.Tick }

// ticks is a pet's own tick count at t: whole ticks since its birth.
func (r Rules) ticks(born, t time.Time) int64 {
	d := t.Sub(born)
	if d <= 0 {
		return 0
	}
	return int64(d / r.Tick)
}

// State is a pet as of one instant: its row and what is derived from it.
type State struct {
	store.Pet
	// At is the instant the state is of.
	At time.Time
	// Age is the pet's own tick count, frozen at death (LifeTicks+1).
	Age int
	// Hunger is 0…MaxHunger.
	Hunger int
	// Alive is false from the instant of death, even before the death sweep
	// records it.
	Alive bool
	// DiedAt is the instant of death, the zero time while alive. It shadows
	// the stored field, which stays zero until the sweep.
	DiedAt time.Time
	// DiesAt is when the pet dies (dies or died).
	DiesAt time.Time
	// Lived is how long the pet has lived (Age ticks).
	Lived time.Duration
	// Viewers is how many open event streams watch the pet right now.
	Viewers int
}

// State derives p's state at now (without viewers).
func (r Rules) State(p store.Pet, now time.Time) State {
	s := State{Pet: p, At: now, DiesAt: p.BornAt.Add(r.Lifespan())}
	end := now
	if !p.DiedAt.IsZero() {
		s.DiesAt = p.DiedAt
	}
	if !now.Before(s.DiesAt) {
		end = s.DiesAt
		s.DiedAt = s.DiesAt
	} else {
		s.Alive = true
	}
	s.Age = int(r.ticks(p.BornAt, end))
	s.Lived = time.Duration(s.Age) * r.Tick
	s.Hunger = r.hunger(p, end)
	return s
}

// hunger is p's hunger at t: HungerPerTick for each of the pet's own ticks
// since its last meal, on top of what it had then, capped at MaxHunger.
func (r Rules) hunger(p store.Pet, t time.Time) int {
	if !t.After(p.HungerAt) {
		return p.HungerBase
	}
	grown := (r.ticks(p.BornAt, t) - r.ticks(p.BornAt, p.HungerAt)) * HungerPerTick
	return int(min(int64(MaxHunger), int64(p.HungerBase)+grown))
}

// FilledHearts is how many of the 5 hearts are full: ⌈(500 − hunger)/100⌉.
func FilledHearts(hunger int) int {
	per := MaxHunger / Hearts
	return min(Hearts, max(0, (MaxHunger-hunger+per-1)/per))
}

// Hearts lists the 5 hearts, full ones first, for a page to draw.
func (s State) Hearts() []bool {
	out := make([]bool, Hearts)
	for i := range FilledHearts(s.Hunger) {
		out[i] = true
	}
	return out
}

// FilledHearts is how many of the pet's hearts are full.
func (s State) FilledHearts() int { return FilledHearts(s.Hunger) }

// Treats is a keeper's treat budget at one instant.
type Treats struct {
	Left int
	// RefillAt is when the budget is back to TreatsPerWindow; the zero time
	// when it is full.
	RefillAt time.Time
}

// treatsAt applies the refill: a full budget, or a window that is over,
// gives a full budget whose window starts at the next treat (now, if one is
// given now).
func treatsAt(k store.Keeper, now time.Time) (left int, windowStart time.Time) {
	if k.ID == "" || k.TreatsLeft >= TreatsPerWindow || !now.Before(k.WindowStart.Add(TreatWindow)) {
		return TreatsPerWindow, now
	}
	return k.TreatsLeft, k.WindowStart
}

// TreatsOf is a keeper's budget at now; a keeper with no row yet has them all.
func TreatsOf(k store.Keeper, now time.Time) Treats {
	left, start := treatsAt(k, now)
	t := Treats{Left: left}
	if left < TreatsPerWindow {
		t.RefillAt = start.Add(TreatWindow)
	}
	return t
}

// Errors of the rules. They come wrapped in a *RuleError whose message names
// the pet; test them with errors.Is.
var (
	// ErrNotYours: only a pet's keeper can feed it.
	ErrNotYours = errors.New("not your pet")
	// ErrOwnPet: treats are for other keepers' pets.
	ErrOwnPet = errors.New("your own pet")
	// ErrDead: a dead pet cannot be fed or given treats.
	ErrDead = errors.New("pet has died")
	// ErrNotWatched: treats go only to pets someone is watching right now.
	ErrNotWatched = errors.New("pet not watched")
	// ErrNoTreats: the keeper's treats are spent until the refill.
	ErrNoTreats = errors.New("no treats left")
)

// RuleError is an action the rules refuse, with a message for people.
type RuleError struct {
	// Rule is one of the Err… sentinels.
	Rule error
	// Message says what happened and what to do.
	Message string
}

// Error is the message for people.
func (e *RuleError) Error() string { return e.Message }

// Unwrap returns the rule, for errors.Is.
func (e *RuleError) Unwrap() error { return e.Rule }

func refuse(rule error, format string, args ...any) error {
	return &RuleError{Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// ValidationError is an invalid field of a new pet.
type ValidationError struct {
	// Field is "name" or "species".
	Field   string
	Message string
}

// Error is the message for people.
func (e *ValidationError) Error() string { return e.Message }

// ValidName trims a name and checks it: 3 to 100 characters, no control
// characters, and none of Unicode's explicit direction controls (the
// embeddings, overrides and isolates, and the marks), which would turn
// the text around the name where a page shows it. Anything else is allowed
// and stored as written (pages escape it, and set names apart with <bdi>),
// right-to-left scripts too.
func ValidName(name string) (string, error) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		return "", &ValidationError{Field: "name", Message: "the name is not valid UTF-8 text"}
	case n < MinNameLength || n > MaxNameLength:
		return "", &ValidationError{Field: "name", Message: fmt.Sprintf("a name has %d to %d characters; this one has %d", MinNameLength, MaxNameLength, n)}
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", &ValidationError{Field: "name", Message: "a name cannot contain control characters such as line breaks or tabs"}
	case strings.ContainsFunc(name, isDirectionControl):
		return "", &ValidationError{Field: "name", Message: "a name cannot contain invisible characters that change the direction of the text around it"}
	}
	return name, nil
}

// isDirectionControl reports whether r is one of Unicode's explicit
// direction formatting characters: the Arabic letter mark, the
// left-to-right and right-to-left marks, the embeddings and overrides
// (U+202A–U+202E) and the isolates (U+2066–U+2069).
func isDirectionControl(r rune) bool {
	switch {
	case r == '\u061c', r == '\u200e', r == '\u200f':
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// ValidSpecies checks a species name.
func ValidSpecies(s string) (store.Species, error) {
	sp, err := store.ParseSpecies(s)
	if err != nil {
		if s == "" {
			return "", &ValidationError{Field: "species", Message: "choose a species"}
		}
		return "", &ValidationError{Field: "species", Message: err.Error()}
	}
	return sp, nil
}
