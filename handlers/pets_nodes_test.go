package handlers_test

// LivePet over two nodes on one PostgreSQL database: each node is the
// pets' part of the app as app.go wires it (the hub feeding the watchers,
// the watchers mirrored into a cluster.Presence, the sim, the real router
// with the events and pets areas) behind its own httptest server, and
// browsers are real HTTP clients reading real event streams. One cookie
// jar per keeper serves both nodes, as behind a load balancer.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/cluster"
	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
	"github.com/phonehome/phonehome/views"
)

// petNodeTTL is the presence TTL of the node tests: a node that dies
// stops counting within a second.
const petNodeTTL = time.Second

// petNode is one node's LivePet, served.
type petNode struct {
	st  *store.Store
	srv *httptest.Server
}

func startPetNode(t *testing.T, db, name string) *petNode {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := migratedStore(t, db)
	v, err := views.New()
	if err != nil {
		t.Fatal(err)
	}
	watchers := pets.NewWatchers()
	hub := events.New(events.Config{OnClients: watchers.Update})
	live.Register(hub)
	pres, err := cluster.NewPresence(st.Writer, st.Dialect, name, cluster.PresenceOptions{
		Flush: 20 * time.Millisecond, Refresh: 200 * time.Millisecond, TTL: petNodeTTL, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := pets.New(pets.Config{
		Store: st, Tick: time.Hour, // no pet gets hungrier while the test runs
		Watchers: watchers, Publisher: live.NewPetFeed(v, hub, logger), Logger: logger, Clients: hub.Clients,
		ActiveEvery: 5 * time.Millisecond, CountsEvery: 5 * time.Millisecond,
		Presence: pres, Node: name, PresenceTTL: petNodeTTL, PresenceEvery: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	petPages := &handlers.Pets{Sim: sim, Store: st, Views: v, Hub: hub, Version: "test"}
	router := handlers.NewServer(logger, v, "test", &handlers.Events{Hub: hub, Resolve: petPages.ResolveStream}, petPages)
	n := &petNode{st: st, srv: httptest.NewServer(router)}
	// As app.go: the presence before the sim, which feeds it; stopped after.
	if err := pres.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sim.Stop(ctx)
		_ = pres.Stop(ctx)
	})
	t.Cleanup(n.srv.Close)
	t.Cleanup(hub.Close) // runs first: open streams end
	return n
}

// browser is one keeper's cookie jar, used on every node (cookies do not
// depend on the port).
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (n *petNode) post(t *testing.T, c *http.Client, path, body string) (*http.Response, string) {
	t.Helper()
	return request(t, c, "POST", n.srv.URL+path, strings.NewReader(body), jsonHeader)
}

// watchingText is how a pet's stats say how many watch it.
func watchingText(n int) string { return fmt.Sprintf(`<span class="stat-n">%d</span> watching`, n) }

// A viewer on each of two nodes: both pages are sent "2 watching"; the
// other node's page lists a pet watched on the first; a treat given on B to
// a pet only A watches is allowed; a feed made on B reaches A's page at
// once; a node that dies stops counting within the presence TTL.
func TestLivePetAcrossTwoNodes(t *testing.T) {
	t.Parallel()
	db := storetest.Postgres(t).Target(t)
	a, b := startPetNode(t, db, "A"), startPetNode(t, db, "B")
	owner, stranger := browser(t), browser(t)

	adopt := func(name string) petJSON {
		resp, body := a.post(t, owner, "/api/pets", fmt.Sprintf(`{"name":%q,"species":"cat"}`, name))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("adopt %s: %d %s", name, resp.StatusCode, body)
		}
		return decodePet(t, body)
	}
	pip, quill := adopt("Pip"), adopt("Quill")
	pipStream := "/events?stream=" + pets.Stream(pip.ID)

	// A watches Pip.
	onA, _, _ := openStream(t, owner, a.srv.URL+pipStream)
	until(t, onA, "A's page: 1 watching", func(m events.Message) bool { return strings.Contains(m.Data, watchingText(1)) })

	// B's page of Quill lists Pip, watched on A only.
	waitUntil(t, 10*time.Second, "B's page lists the pet watched on A", func() bool {
		resp, body := request(t, stranger, "GET", b.srv.URL+"/pets/"+strconv.FormatInt(quill.ID, 10), nil, nil)
		return resp.StatusCode == http.StatusOK && strings.Contains(body, "Active pets (1)") &&
			strings.Contains(body, `href="/pets/`+strconv.FormatInt(pip.ID, 10)+`"`)
	})

	// A treat given on B: Pip is watched (on A).
	resp, body := b.post(t, stranger, "/api/pets/"+strconv.FormatInt(pip.ID, 10)+"/treat", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("treat on B of the pet A watches: %d %s", resp.StatusCode, body)
	}

	// B watches Pip too: both pages say 2.
	onB, _, _ := openStream(t, stranger, b.srv.URL+pipStream)
	until(t, onB, "B's page: 2 watching", func(m events.Message) bool { return strings.Contains(m.Data, watchingText(2)) })
	until(t, onA, "A's page: 2 watching", func(m events.Message) bool { return strings.Contains(m.Data, watchingText(2)) })
	if got := decodePet(t, getBody(t, owner, a.srv.URL+"/api/pets/"+strconv.FormatInt(pip.ID, 10))); got.Viewers != 2 {
		t.Errorf("A's API: %d viewers, want 2", got.Viewers)
	}

	// The keeper feeds Pip on B: A's page shows the new hunger.
	resp, body = b.post(t, owner, "/api/pets/"+strconv.FormatInt(pip.ID, 10)+"/feed", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed on B: %d %s", resp.StatusCode, body)
	}
	fed := decodePet(t, body)
	hunger := fmt.Sprintf(">%d / 500", fed.Hunger)
	until(t, onA, "A's page shows the feed made on B", func(m events.Message) bool { return strings.Contains(m.Data, hunger) })

	// B dies: nothing of it writes any more (its streams stay open, as a
	// killed process's sockets would until the kernel closed them).
	b.st.Close()
	until(t, onA, "A's page: 1 watching once B is gone", func(m events.Message) bool { return strings.Contains(m.Data, watchingText(1)) })
}

// getBody is the body of a GET that must answer 200.
func getBody(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, body := request(t, c, "GET", url, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body
}
