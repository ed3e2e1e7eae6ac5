package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/handlers"
)

// petKeeper is one person with a cookie jar of their own: the same keeper
// on every node (cookies go to a host, whatever its port).
type petKeeper struct {
	t *testing.T
	// client makes the API calls (bounded); streams has no time limit
	// (http.Client.Timeout would cut a stream); they share the cookies.
	client, streams *http.Client
}

func newPetKeeper(t *testing.T) *petKeeper {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &petKeeper{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}, streams: &http.Client{Jar: jar}}
}

// call makes a JSON API request and decodes a 2xx answer into out.
func (k *petKeeper) call(method, url, body string, wantStatus int, out any) {
	k.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	status, data, err := tryFaultCall(k.client, method, url, ct, body)
	if err != nil {
		k.t.Fatalf("%s %s: %v", method, url, err)
	}
	if status != wantStatus {
		k.t.Fatalf("%s %s: %d %s, want %d", method, url, status, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(data), out); err != nil {
			k.t.Fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
}

// pet reads the pet through node base's API.
func (k *petKeeper) pet(base string, id int64) handlers.PetJSON {
	k.t.Helper()
	var p handlers.PetJSON
	k.call("GET", fmt.Sprintf("%s/api/pets/%d", base, id), "", 200, &p)
	return p
}

// watch opens the pet's stream on node base, as its page does, and
// delivers its events; the viewer leaves when the test ends or when stop
// is called.
func (k *petKeeper) watch(base string, id int64) (msgs <-chan events.Message, stop func()) {
	k.t.Helper()
	return openStream(k.t, k.streams, fmt.Sprintf("%s/events?stream=pet-%d", base, id), "")
}

// openStream opens the event stream at url with client, resuming after
// lastID when it is not empty (the Last-Event-ID header, as EventSource
// sends it), and delivers its events until stop is called or the test
// ends.
func openStream(t *testing.T, client *http.Client, url, lastID string) (msgs <-chan events.Message, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return eventstest.Messages(resp.Body, 1<<16), cancel
}

// untilEvent reads msgs until an event's data contains want, failing after
// within.
func untilEvent(t *testing.T, msgs <-chan events.Message, within time.Duration, what, want string) {
	t.Helper()
	eventstest.Until(t, msgs, within, what, func(m events.Message) bool { return strings.Contains(m.Data, want) })
}

// TestNodesLivePet runs LivePet on two nodes over one PostgreSQL database:
// a pet adopted and watched on node A is treated by another keeper on node
// B (allowed: someone watches it, on another node), and A's page hears of
// the treat; a second viewer, on B, makes both nodes say "2 watching"; and
// when B is killed its viewer stops counting within seconds.
func TestNodesLivePet(t *testing.T) {
	// Ticks an hour apart: nothing but the treat changes the pet's hunger.
	c := startNodes(t, 2, 0, false, "-pet-tick", "1h")
	a, b := c.URL(0), c.URL(1)
	owner, friend := newPetKeeper(t), newPetKeeper(t)
	var mochi handlers.PetJSON
	owner.call("POST", a+"/api/pets", `{"name":"Mochi","species":"cat"}`, 201, &mochi)

	onA, _ := owner.watch(a, mochi.ID)
	waitViewers(t, friend, b, mochi.ID, 1, "node B to count node A's viewer")
	var treated handlers.TreatJSON
	friend.call("POST", fmt.Sprintf("%s/api/pets/%d/treat", b, mochi.ID), "", 200, &treated)
	if treated.Pet.Hunger >= mochi.Hunger {
		t.Fatalf("after the treat on node B: hunger %d, was %d", treated.Pet.Hunger, mochi.Hunger)
	}
	untilEvent(t, onA, 10*time.Second, "node A's page hearing of the treat on node B", fmt.Sprintf("%d / 500", treated.Pet.Hunger))

	_, _ = friend.watch(b, mochi.ID)
	untilEvent(t, onA, 10*time.Second, "node A's page saying 2 watching", `<span class="stat-n">2</span> watching`)
	waitViewers(t, owner, a, mochi.ID, 2, "node A's API to say 2 viewers")
	waitViewers(t, owner, b, mochi.ID, 2, "node B's API to say 2 viewers")

	// A node that dies takes its viewers with it, within the presence TTL.
	c.kill(1)
	untilEvent(t, onA, 20*time.Second, "node A's page saying 1 watching once node B is dead", `<span class="stat-n">1</span> watching`)
	waitViewers(t, owner, a, mochi.ID, 1, "node A's API to say 1 viewer once node B is dead")
}

// waitViewers waits until node base's API says the pet has want
// viewers.
func waitViewers(t *testing.T, k *petKeeper, base string, id int64, want int, what string) {
	t.Helper()
	waitUntil(t, 20*time.Second, what, func() (bool, string) {
		p := k.pet(base, id)
		return p.Viewers == want, fmt.Sprintf("%d viewers", p.Viewers)
	})
}
