package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

// The ledger of the LivePet kill test: every adoption and feed it asked
// for, acknowledged or cut by a kill, and the check of the file against it
// with the rules of package pets.

// killRound is one life of the server under load: requests go to base, and
// once killing is set a connection that breaks is the kill's doing.
type killRound struct {
	n       int
	base    string
	killing atomic.Bool
	// dead: the killed process is gone; a request sent after that cannot
	// land, however its connection fails.
	dead atomic.Bool
}

// killCut is what a kill did to a request.
type killCut int

const (
	// notByKill: an error the kill does not explain, a failure.
	notByKill killCut = iota
	// refused: the server was gone; the request never reached it.
	refused
	// cut: the connection broke (reset, closed mid-answer): the request
	// may or may not have landed.
	cut
)

// byKill says what err is: a request cut by this round's kill, one refused
// because the server was gone (sentDead: it was sent after the process was
// gone), or (before the kill, or another error) a failure.
func (r *killRound) byKill(err error, sentDead bool) killCut {
	if !r.killing.Load() {
		return notByKill
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return refused
	}
	if sentDead {
		// Sent to a connection the dead process left open: it failed
		// one way or another, but never landed.
		return refused
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return cut
	}
	// net/http does not wrap every one of these.
	msg := err.Error()
	if strings.Contains(msg, "connection refused") {
		return refused
	}
	for _, s := range []string{"connection reset", "broken pipe", "EOF", "server closed idle connection"} {
		if strings.Contains(msg, s) {
			return cut
		}
	}
	return notByKill
}

// roundCall is one request sent during a round: when it was sent and
// answered, the answer, and for an error what the kill did to it.
type roundCall struct {
	sent, done time.Time
	status     int
	data       string
	err        error
	how        killCut
}

// call sends one request by c while the round runs and times it; an error
// is judged by byKill, with whether the process was already gone when it
// was sent.
func (r *killRound) call(c *http.Client, method, url, contentType, body string) roundCall {
	sentDead := r.dead.Load()
	res := roundCall{sent: time.Now()}
	res.status, res.data, res.err = tryFaultCall(c, method, url, contentType, body)
	res.done = time.Now()
	if res.err != nil {
		res.how = r.byKill(res.err, sentDead)
	}
	return res
}

// petTry is one feed asked for: the server's instant of it lies between
// sent and done (the test and the server share the clock).
type petTry struct {
	sent, done time.Time
	acked      bool
	// hunger and age are the answer's, when acked.
	hunger, age int
}

// petRecord is one pet adopted with a 201 and the feeds asked for it, in
// the order made (one worker feeds it, one request at a time).
type petRecord struct {
	answer     handlers.PetJSON
	sent, done time.Time
	feeds      []petTry
}

// cutAdoption is an adoption cut by a kill: it may be in the file.
type cutAdoption struct {
	species    string
	sent, done time.Time
}

// petLedger is what the load asked for and what the server acknowledged.
type petLedger struct {
	rules pets.Rules

	mu       sync.Mutex
	pets     map[int64]*petRecord
	order    []int64 // adoption order
	own      map[int][]int64
	cut      map[string]cutAdoption // by name (names are unique)
	feeds    int                    // acknowledged
	cutFeeds int
	// refused counts the requests refused while the server was down.
	refused int
}

func newPetLedger(tick time.Duration) *petLedger {
	return &petLedger{rules: pets.Rules{Tick: tick}, pets: map[int64]*petRecord{}, own: map[int][]int64{}, cut: map[string]cutAdoption{}}
}

// pick is the worker's next pet to feed, or 0 to adopt one.
func (l *petLedger) pick(worker int, r *rand.Rand) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mine := l.own[worker]; len(mine) > 0 && r.IntN(3) > 0 {
		return mine[r.IntN(len(mine))]
	}
	return 0
}

func (l *petLedger) adopted(worker int, p handlers.PetJSON, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pets[p.ID] = &petRecord{answer: p, sent: sent, done: done}
	l.order = append(l.order, p.ID)
	l.own[worker] = append(l.own[worker], p.ID)
}

func (l *petLedger) adoptionCut(name, species string, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut[name] = cutAdoption{species: species, sent: sent, done: done}
}

func (l *petLedger) fed(id int64, try petTry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pets[id].feeds = append(l.pets[id].feeds, try)
	if try.acked {
		l.feeds++
	} else {
		l.cutFeeds++
	}
}

func (l *petLedger) wasRefused() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused++
}

// acked is how many actions were acknowledged: adoptions and feeds.
func (l *petLedger) acked() (adoptions, feeds int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pets), l.feeds
}

func (l *petLedger) first() handlers.PetJSON {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pets[l.order[0]].answer
}

// storedPet is a row of the pets table.
type storedPet struct {
	ID         int64  `db:"id"`
	Name       string `db:"name"`
	Species    string `db:"species"`
	BornAt     int64  `db:"born_at"`
	HungerBase int    `db:"hunger_base"`
	HungerAt   int64  `db:"hunger_at"`
	DiedAt     *int64 `db:"died_at"`
}

// hungerState is what a pet's row may hold after some of its feeds: its
// hunger at its own tick `tick`, written at an instant in [lo, hi] (unix ms).
type hungerState struct {
	hunger int
	tick   int
	lo, hi int64
}

// ledgerCheck is what check found, for the log.
type ledgerCheck struct {
	feedsChecked, feedsAboveZero int
	cutAdoptionsLanded           int
	cutFeedsLanded               int
}

// check compares the pets in the file with the ledger: every pet adopted
// with a 201 is there with its name, species and birth; every feed
// answered 200 lowered the hunger the rules give at its tick by
// pets.FeedAmount (the next answer or the file shows it); the row holds
// the last acknowledged feed's hunger, or that of a cut feed after it; a
// pet nobody acknowledged is a cut adoption.
func (l *petLedger) check(t *testing.T, rows []storedPet) ledgerCheck {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out ledgerCheck
	byID := map[int64]storedPet{}
	for _, row := range rows {
		byID[row.ID] = row
		if _, ok := l.pets[row.ID]; ok {
			continue
		}
		c, ok := l.cut[row.Name]
		switch {
		case !ok:
			t.Errorf("pet %d (%q) is in the file but was never asked for", row.ID, row.Name)
		case row.Species != c.species || row.BornAt < c.sent.UnixMilli() || row.BornAt > c.done.UnixMilli():
			t.Errorf("pet %d (%q, %s, born %d) does not match its adoption cut by a kill (%s, sent %d, cut %d)",
				row.ID, row.Name, row.Species, row.BornAt, c.species, c.sent.UnixMilli(), c.done.UnixMilli())
		default:
			out.cutAdoptionsLanded++
		}
	}
	for _, id := range l.order {
		rec := l.pets[id]
		row, ok := byID[id]
		a := rec.answer
		switch {
		case !ok:
			t.Errorf("pet %d (%q) was adopted (201) but is not in the file", id, a.Name)
			continue
		case row.Name != a.Name || row.Species != a.Species || row.BornAt != a.BornAt.UnixMilli():
			t.Errorf("pet %d stored as %+v, adopted as %+v", id, row, a)
			continue
		case row.DiedAt != nil:
			t.Errorf("pet %d died at %d, long before its lifespan", id, *row.DiedAt)
		}
		born := row.BornAt
		ms := func(tm time.Time) int64 { return tm.UnixMilli() }
		tickAt := func(at int64) int {
			return l.rules.State(store.Pet{BornAt: time.UnixMilli(born)}, time.UnixMilli(at)).Age
		}
		// after is the hunger a feed at the pet's tick n leaves, from s.
		after := func(s hungerState, n int) int {
			p := store.Pet{BornAt: time.UnixMilli(born), HungerBase: s.hunger,
				HungerAt: time.UnixMilli(born).Add(time.Duration(s.tick) * l.rules.Tick)}
			h := l.rules.State(p, time.UnixMilli(born).Add(time.Duration(n)*l.rules.Tick)).Hunger
			return max(0, h-pets.FeedAmount)
		}
		states := []hungerState{{hunger: pets.NewbornHunger, tick: 0, lo: born, hi: born}}
		for i, f := range rec.feeds {
			first, last := tickAt(ms(f.sent)), tickAt(ms(f.done))
			if !f.acked {
				next := slices.Clone(states)
				for _, s := range states {
					for n := max(s.tick, first); n <= last; n++ {
						next = append(next, hungerState{hunger: after(s, n), tick: n, lo: ms(f.sent), hi: ms(f.done)})
					}
				}
				states = dedupeStates(next)
				continue
			}
			out.feedsChecked++
			if f.hunger > 0 {
				out.feedsAboveZero++
			}
			if f.age < first || f.age > last {
				t.Errorf("pet %d, feed %d: answered at age %d, but it was asked between ticks %d and %d", id, i+1, f.age, first, last)
			}
			var want []int
			for _, s := range states {
				if f.age >= s.tick {
					want = append(want, after(s, f.age))
				}
			}
			if !slices.Contains(want, f.hunger) {
				t.Errorf("pet %d, feed %d (answered 200 at age %d): hunger %d, but the rules give %v from the feeds before it (%+v): an acknowledged feed was lost or miscounted",
					id, i+1, f.age, f.hunger, want, states)
			}
			states = []hungerState{{hunger: f.hunger, tick: f.age, lo: ms(f.sent), hi: ms(f.done)}}
		}
		// The row holds one of the states the feeds could leave.
		matched := false
		for _, s := range states {
			if row.HungerBase == s.hunger && row.HungerAt >= s.lo && row.HungerAt <= s.hi && tickAt(row.HungerAt) == s.tick {
				matched = true
				if s.lo != born && !lastAckedIs(rec.feeds, s) {
					out.cutFeedsLanded++
				}
				break
			}
		}
		if !matched {
			t.Errorf("pet %d: the file holds hunger %d at %d (tick %d), none of what its acknowledged feeds and the rules allow: %+v",
				id, row.HungerBase, row.HungerAt, tickAt(row.HungerAt), states)
		}
	}
	return out
}

// lastAckedIs reports whether s is the state the last acknowledged feed left.
func lastAckedIs(feeds []petTry, s hungerState) bool {
	for i := len(feeds) - 1; i >= 0; i-- {
		if feeds[i].acked {
			f := feeds[i]
			return f.hunger == s.hunger && f.age == s.tick && f.sent.UnixMilli() == s.lo && f.done.UnixMilli() == s.hi
		}
	}
	return false
}

func dedupeStates(s []hungerState) []hungerState {
	seen := map[hungerState]bool{}
	var out []hungerState
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// String is the ledger's summary, for failures.
func (c ledgerCheck) String() string {
	return fmt.Sprintf("%d acknowledged feeds checked (%d left hunger above 0), %d cut adoptions and %d cut feeds landed",
		c.feedsChecked, c.feedsAboveZero, c.cutAdoptionsLanded, c.cutFeedsLanded)
}
