package main

// Fault test: LivePet's acknowledged actions survive SIGKILL.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store/storetest"
)

// TestFaultKillLivePet adopts and feeds pets through the JSON API while the
// server is killed with SIGKILL and restarted, several times. Every answer
// is the action's success (201, 200) or a connection cut by the kill; an
// adoption answered 201 is in the file with its name, species and birth;
// every feed answered 200 lowered the hunger the rules give at its tick by
// pets.FeedAmount, and the file holds the last one's hunger (or that of a
// cut feed made after it). Actions cut by a kill may or may not be in the
// file, but nothing else is. The pets live on: older, feedable, their
// page's stream live.
func TestFaultKillLivePet(t *testing.T) {
	skipShort(t, "kills and restarts the real binary")
	const (
		kills = 3
		tick  = 100 * time.Millisecond
	)
	bin := phonehomeBinary(t, false)
	path := storetest.DatabaseFor(t, "pets.db")
	rng := rand.New(rand.NewPCG(faultSeed(t), 2))
	args := []string{"-pet-tick", tick.String(), "-poll", "50ms"}
	srv := startFaultServer(t, bin, path, args...)

	jar, _ := cookiejar.New(nil)
	// Its own connections, dropped after each kill: a connection to the
	// killed server must not be reused for the next one.
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar, Transport: &http.Transport{}}
	// One keeper for every request: its cookie comes with the form.
	if status, _ := faultCall(t, client, "GET", srv.URL+"/pets/new", "", ""); status != 200 {
		t.Fatalf("GET /pets/new: %d", status)
	}
	u, _ := http.NewRequest("GET", srv.URL, nil)
	var keeperID string
	for _, c := range jar.Cookies(u.URL) {
		if c.Name == "phonehome_keeper" {
			keeperID = c.Value
		}
	}
	if keeperID == "" {
		t.Fatal("no keeper cookie")
	}

	ledger := newPetLedger(tick)
	species := []string{"cat", "dog", "fish", "fox", "rabbit", "turtle", "crab", "owl", "phoenix"}
	// feed feeds a pet and records what came of it; false when the answer
	// was neither 200 nor a cut the kill explains.
	feed := func(round *killRound, id int64) bool {
		res := round.call(client, "POST", fmt.Sprintf("%s/api/pets/%d/feed", round.base, id), "", "")
		var p handlers.PetJSON
		switch {
		case res.err != nil && res.how == refused:
			ledger.wasRefused()
			return true
		case res.err != nil && res.how == cut:
			ledger.fed(id, petTry{sent: res.sent, done: res.done})
			return true
		case res.err != nil:
			t.Errorf("feed pet %d: %v (not caused by a kill)", id, res.err)
		case res.status != 200:
			t.Errorf("feed pet %d: %d %s, want 200", id, res.status, res.data)
		case json.Unmarshal([]byte(res.data), &p) != nil || p.ID != id || !p.Alive:
			t.Errorf("feed pet %d answered 200 with %q", id, res.data)
		default:
			ledger.fed(id, petTry{sent: res.sent, done: res.done, acked: true, hunger: p.Hunger, age: p.Age})
			return true
		}
		return false
	}
	// stopped counts the workers that met a failure and stopped.
	var stopped atomic.Int32
	load := func(ctx context.Context, round *killRound, worker int, r *rand.Rand) {
		for n := 0; ctx.Err() == nil; n++ {
			if id := ledger.pick(worker, r); id != 0 {
				if !feed(round, id) {
					stopped.Add(1)
					return
				}
				continue
			}
			// Some names end in a space, which the server trims.
			asked := fmt.Sprintf("Crashy %d-%d-%d %s", round.n, worker, n, strings.Repeat("z", r.IntN(20)))
			name := strings.TrimSpace(asked)
			sp := species[r.IntN(len(species))]
			body := fmt.Sprintf(`{"name":%q,"species":%q}`, asked, sp)
			res := round.call(client, "POST", round.base+"/api/pets", "application/json", body)
			var p handlers.PetJSON
			switch {
			case res.err != nil && res.how == refused:
				ledger.wasRefused()
				continue
			case res.err != nil && res.how == cut:
				ledger.adoptionCut(name, sp, res.sent, res.done)
				continue
			case res.err != nil:
				t.Errorf("adopt %q: %v (not caused by a kill)", name, res.err)
			case res.status != 201:
				t.Errorf("adopt %q: %d %s, want 201", name, res.status, res.data)
			case json.Unmarshal([]byte(res.data), &p) != nil:
				t.Errorf("adopt answered 201 with %q", res.data)
			case p.Name != name || p.Species != sp || p.Hunger != pets.NewbornHunger || p.Age != 0 || !p.Alive:
				t.Errorf("adopt %q (%s) answered %+v: not a newborn %s of that name", name, sp, p, sp)
			default:
				ledger.adopted(worker, p, res.sent, res.done)
				continue
			}
			stopped.Add(1)
			return
		}
	}
	acked := func() int {
		a, f := ledger.acked()
		return a + f
	}
	for k := range kills {
		round := &killRound{n: k + 1, base: srv.URL}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 4 {
			r := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Go(func() { load(ctx, round, w, r) })
		}
		// Kill at a random moment while requests are in flight. The workers
		// are stopped before the test ends on a failure: they report to t.
		target := acked() + 20 + rng.IntN(400)
		for deadline := time.Now().Add(time.Minute); acked() < target && stopped.Load() == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("round %d: %d acknowledged actions: not within a minute (%d acknowledged)", k+1, target, acked())
			}
		}
		round.killing.Store(true)
		srv.kill()
		round.dead.Store(true)
		cancel()
		wg.Wait()
		client.CloseIdleConnections()
		if stopped.Load() > 0 {
			t.FailNow() // the workers said why
		}
		adoptions, feeds := ledger.acked()
		t.Logf("kill %d after %d adoptions and %d feeds acknowledged", k+1, adoptions, feeds)
		srv = startFaultServer(t, bin, path, args...)
	}

	// Pets resume: a pet adopted before the first kill is older, alive,
	// its keeper can still feed it, and its page's stream is live.
	first := ledger.first()
	waitUntil(t, 30*time.Second, fmt.Sprintf("pet %d older and alive after the kills", first.ID), func() (bool, string) {
		status, body := faultCall(t, client, "GET", fmt.Sprintf("%s/api/pets/%d", srv.URL, first.ID), "", "")
		var now handlers.PetJSON
		if status != 200 || json.Unmarshal([]byte(body), &now) != nil {
			t.Fatalf("GET pet %d after the kills: %d %s", first.ID, status, body)
		}
		if !now.Alive || now.Name != first.Name {
			t.Fatalf("pet %d after the kills: %+v; adopted as %+v", first.ID, now, first)
		}
		return now.Age > first.Age, fmt.Sprintf("age %d, adopted at age %d", now.Age, first.Age)
	})
	// No kill comes now: every error is a failure.
	feed(&killRound{base: srv.URL}, first.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/events?stream=pet-%d", srv.URL, first.ID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("pet stream after the kills: %d", resp.StatusCode)
	}
	m, err := events.NewReader(resp.Body).Next()
	resp.Body.Close()
	if err != nil || !strings.Contains(m.Data, "pet") {
		t.Errorf("pet stream after the kills: %+v, %v", m, err)
	}
	srv.stop()

	db := openFaultDB(t, path)
	var stored []storedPet
	if err := db.Select(&stored, db.Rebind("SELECT id, name, species, born_at, hunger_base, hunger_at, died_at FROM pets WHERE keeper_id = ?"), keeperID); err != nil {
		t.Fatal(err)
	}
	got := ledger.check(t, stored)
	adoptions, feeds := ledger.acked()
	t.Logf("%d kills survived: %d adoptions and %d feeds acknowledged, none lost: %d pets stored; %s (%d adoptions and %d feeds were cut by the kills, %d requests refused while the server was down)",
		kills, adoptions, feeds, len(stored), got, len(ledger.cut), ledger.cutFeeds, ledger.refused)
}
