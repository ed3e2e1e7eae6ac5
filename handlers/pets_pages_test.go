package handlers_test

// LivePet's pages, forms and streams, through the real router.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
)

func TestAdoptFormReRendersErrorsWithTheValues(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k := b.keeper(t)
	resp, body := k.do(t, "GET", "/pets/new", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `name="species" value="phoenix"`) || !strings.Contains(body, `<form class="card adopt-form" method="post" action="/pets">`) {
		t.Fatalf("form: %d", resp.StatusCode)
	}
	tests := []struct {
		name, form, message, keeps string
	}{
		{"2 characters", "name=Re&species=owl", "a name has 3 to 100 characters; this one has 2", `value="Re"`},
		{"101 characters", "name=" + strings.Repeat("x", 101) + "&species=owl", "this one has 101", `value="` + strings.Repeat("x", 101) + `"`},
		{"unknown species", "name=Rex&species=dragon", "unknown species", `value="Rex"`},
	}
	for _, tt := range tests {
		resp, body := k.do(t, "POST", "/pets", tt.form, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if resp.StatusCode != 422 || !strings.Contains(body, tt.message) || !strings.Contains(body, tt.keeps) {
			t.Errorf("%s: %d, message or value missing", tt.name, resp.StatusCode)
		}
		if tt.name != "unknown species" && !strings.Contains(body, `value="owl" checked`) {
			t.Errorf("%s: the species choice is lost", tt.name)
		}
	}
	if c, _ := b.st.CountPets(context.Background()); c.Total() != 0 {
		t.Errorf("invalid forms adopted %d pets", c.Total())
	}
}

func TestWatchersAreCountedFromRealStreams(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	owner, p := b.withMochi(t)
	name := pets.Stream(p.ID)

	first := b.keeper(t).watch(t, name)
	second := b.keeper(t).watch(t, name)
	waitUntil(t, 10*time.Second, "viewers=2", func() bool { return owner.get(t, p.ID).Viewers == 2 })
	first.until(t, "2 watching", func(m events.Message) bool {
		return strings.Contains(m.Data, `id="pet-stats"`) && strings.Contains(m.Data, `<span class="stat-n">2</span> watching`)
	})
	// The page counts the visitor who is about to connect.
	if _, body := owner.do(t, "GET", "/pets/"+fmt.Sprint(p.ID), "", nil); !strings.Contains(body, `<span class="stat-n">3</span> watching`) {
		t.Error("page does not show 3 watching")
	}

	second.cancel()
	waitUntil(t, 10*time.Second, "viewers=1", func() bool { return owner.get(t, p.ID).Viewers == 1 })
	first.until(t, "1 watching", func(m events.Message) bool {
		return strings.Contains(m.Data, `<span class="stat-n">1</span> watching`)
	})
	first.cancel()
	waitUntil(t, 10*time.Second, "viewers=0", func() bool { return owner.get(t, p.ID).Viewers == 0 })
}

func TestPetPageIsLiveUntilThePetDies(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k, p := b.withMochi(t)
	page := fmt.Sprintf("/pets/%d", p.ID)
	_, body := k.do(t, "GET", page, "", nil)
	for _, want := range []string{
		fmt.Sprintf(`sse-connect="/events?stream=pet-%d&amp;last_event_id=`, p.ID),
		`<div sse-swap="message" hx-swap="none" hidden></div>`,
		`id="pet-stats"`, `aria-label="3 of 5 hearts"`, `250 / 500`,
		fmt.Sprintf(`hx-post="/pets/%d/feed"`, p.ID), `>Feed</button>`,
		`Active pets (0)`, "Nobody's around", `5 left`, `Your pet`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="pet-stats" class="pet-stats" hx-swap-oob`) {
		t.Error("page fragments must not be out-of-band")
	}
	// Another keeper sees no Feed button.
	if _, body := b.keeper(t).do(t, "GET", page, "", nil); strings.Contains(body, ">Feed</button>") || strings.Contains(body, "Your pet") {
		t.Error("a stranger may feed")
	}

	s := k.watch(t, pets.Stream(p.ID))
	waitUntil(t, 10*time.Second, "watched", func() bool { return b.sim.Watchers().Count(p.ID) == 1 })
	b.clock.Set(petEpoch.Add(7*petTick + time.Second))
	if _, err := b.sim.Tick(context.Background(), b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	m := s.until(t, "tick", func(m events.Message) bool { return strings.Contains(m.Data, `<span class="stat-n">7</span> ticks`) })
	if m.Event != "" || !strings.HasPrefix(m.Data, `<dl id="pet-stats" class="pet-stats" hx-swap-oob="true">`) || !strings.Contains(m.Data, "285 / 500") {
		t.Errorf("tick event %+v", m)
	}

	death := petEpoch.Add(b.sim.Rules().Lifespan())
	b.clock.Set(death.Add(time.Second))
	if _, err := b.sim.Tick(context.Background(), b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	m = s.until(t, "death", func(m events.Message) bool { return strings.Contains(m.Data, `id="pet-main"`) })
	if !strings.HasPrefix(m.Data, `<div id="pet-main" class="pet-main pet-dead" hx-swap-oob="true">`) || strings.Contains(m.Data, "sse-connect") ||
		!strings.Contains(m.Data, "Mochi ☠️") || !strings.Contains(m.Data, "10,001") {
		t.Errorf("death event %.300q", m.Data)
	}
	_, body = k.do(t, "GET", page, "", nil)
	if strings.Contains(body, "sse-connect") || !strings.Contains(body, "Mochi ☠️") || strings.Contains(body, ">Feed</button>") {
		t.Error("dead pet's page is live or lacks the skull")
	}
	if got := k.get(t, p.ID); got.Alive || got.DiedAt == nil || *got.DiedAt != death.Format(time.RFC3339) {
		t.Errorf("dead pet %+v", got)
	}
}

func TestPetStreamsResolve(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k := b.keeper(t)
	old := k.adopt(t, "Old", "owl")
	b.clock.Set(petEpoch.Add(b.sim.Rules().Lifespan()))
	young := k.adopt(t, "Young", "owl")
	tests := []struct {
		stream string
		want   int
	}{
		{pets.Stream(young.ID), 200},
		{"pets", 200},
		{pets.Stream(old.ID), 404}, // dead: not live
		{"pet-999", 404},
		{"pet-abc", 404},
		{"pet-0" + fmt.Sprint(young.ID), 404},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", b.srv.URL+"/events?stream="+tt.stream, nil)
		resp, err := k.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.stream, resp.StatusCode, tt.want)
		}
		cancel()
		resp.Body.Close()
	}
}

func TestTreatsThroughTheAPIAndTheForms(t *testing.T) {
	t.Parallel()
	b, alice, mochi, bob := mochiAndAnother(t)
	rex := bob.adopt(t, "Rex", "dog")
	treat := func(k *keeper, id int64) (int, string) {
		resp, body := k.do(t, "POST", fmt.Sprintf("/api/pets/%d/treat", id), "", nil)
		return resp.StatusCode, body
	}
	if code, body := treat(bob, mochi.ID); code != 409 || !strings.Contains(body, "nobody is watching Mochi right now") {
		t.Errorf("unwatched: %d %s", code, body)
	}
	alice.watch(t, pets.Stream(mochi.ID))
	bob.watch(t, pets.Stream(rex.ID))
	waitUntil(t, 10*time.Second, "watched", func() bool { return b.sim.Watchers().Len() == 2 })

	code, body := treat(bob, mochi.ID)
	var got struct {
		Pet        petJSON `json:"pet"`
		TreatsLeft int     `json:"treats_left"`
		RefillAt   *string `json:"treats_refill_at"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.Pet.Hunger != 230 || got.TreatsLeft != 4 ||
		got.RefillAt == nil || *got.RefillAt != petEpoch.Add(30*time.Minute).Format(time.RFC3339) {
		t.Errorf("treat: %d %s", code, body)
	}
	if code, body := treat(bob, rex.ID); code != 403 || !strings.Contains(body, "Rex is your own pet") {
		t.Errorf("own pet: %d %s", code, body)
	}

	// The page's Give Treat button, with htmx: a message and the treats left.
	formPath := fmt.Sprintf("/pets/%d/treat", mochi.ID)
	resp, body := bob.do(t, "POST", formPath, "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 200 || !strings.Contains(body, "You gave Mochi a treat (hunger now 210); you have 3 treats left.") ||
		!strings.Contains(body, `<p id="pet-treats" class="treats" hx-swap-oob="true">`) || !strings.Contains(body, "3 left") {
		t.Errorf("htmx treat: %d %s", resp.StatusCode, body)
	}
	// Without JavaScript: back to the page the button was on.
	resp, _ = bob.do(t, "POST", formPath, "", map[string]string{"Referer": b.srv.URL + fmt.Sprintf("/pets/%d", rex.ID)})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != fmt.Sprintf("/pets/%d", rex.ID) {
		t.Errorf("plain treat: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = bob.do(t, "POST", formPath, "", map[string]string{"Referer": "http://evil.example/pets/1"})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != fmt.Sprintf("/pets/%d", mochi.ID) {
		t.Errorf("foreign referer: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	treat(bob, mochi.ID) // the fifth
	if code, body := treat(bob, mochi.ID); code != 409 || !strings.Contains(body, "no treats left: 5 more at 03:34 UTC") {
		t.Errorf("sixth: %d %s", code, body)
	}
	resp, body = bob.do(t, "POST", formPath, "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 409 || resp.Header.Get(handlers.FlashHeader) == "" || !strings.Contains(body, `flash-error`) || !strings.Contains(body, "no treats left") {
		t.Errorf("htmx sixth: %d %s", resp.StatusCode, body)
	}
	_, page := bob.do(t, "GET", fmt.Sprintf("/pets/%d", rex.ID), "", nil)
	if !strings.Contains(page, "0 left") || !strings.Contains(page, "5 more at") {
		t.Error("page does not show the spent budget")
	}
	b.clock.Set(petEpoch.Add(30 * time.Minute))
	if code, body := treat(bob, mochi.ID); code != 200 || !strings.Contains(body, `"treats_left":4`) {
		t.Errorf("after the refill: %d %s", code, body)
	}
}

func TestFeedForm(t *testing.T) {
	t.Parallel()
	_, owner, p, stranger := mochiAndAnother(t)
	path := fmt.Sprintf("/pets/%d/feed", p.ID)
	resp, body := owner.do(t, "POST", path, "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 200 || !strings.Contains(body, "You fed Mochi. Hunger is now 150 of 500.") ||
		!strings.Contains(body, `<dl id="pet-stats" class="pet-stats" hx-swap-oob="true">`) {
		t.Errorf("htmx feed: %d %s", resp.StatusCode, body)
	}
	resp, _ = owner.do(t, "POST", path, "", nil)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != fmt.Sprintf("/pets/%d", p.ID) {
		t.Errorf("plain feed: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = stranger.do(t, "POST", path, "", map[string]string{"HX-Request": "true"})
	if resp.StatusCode != 403 || resp.Header.Get(handlers.FlashHeader) == "" || !strings.Contains(body, "flash-error") || !strings.Contains(body, "Mochi is not your pet") {
		t.Errorf("stranger, htmx: %d %s", resp.StatusCode, body)
	}
	resp, body = stranger.do(t, "POST", path, "", nil)
	if resp.StatusCode != 403 || !strings.Contains(body, "<h1>403 · Forbidden</h1>") {
		t.Errorf("stranger, plain: %d", resp.StatusCode)
	}
	if got := owner.get(t, p.ID); got.Hunger != 50 {
		t.Errorf("hunger %d after two feeds", got.Hunger)
	}
}

func TestPetPostsRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k, p := b.withMochi(t)
	for _, tt := range []struct{ path, body string }{
		{"/api/pets", `{"name":"Evil","species":"crab"}`},
		{"/pets", "name=Evil&species=crab"},
		{fmt.Sprintf("/pets/%d/feed", p.ID), ""},
		{fmt.Sprintf("/api/pets/%d/treat", p.ID), ""},
	} {
		resp, _ := k.do(t, "POST", tt.path, tt.body, map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d", tt.path, resp.StatusCode)
		}
	}
	if got := k.get(t, p.ID); got.Hunger != 250 {
		t.Errorf("cross-site feed went through: %+v", got)
	}
}

func TestActivePetsListOtherWatchedPets(t *testing.T) {
	t.Parallel()
	_, alice, mochi, bob := mochiAndAnother(t)
	rex := bob.adopt(t, "Rex", "dog")
	hoot := bob.adopt(t, "Hoot", "owl")
	onMochi := alice.watch(t, pets.Stream(mochi.ID))
	bob.watch(t, pets.Stream(rex.ID))
	// Mochi's page learns that Rex is being watched.
	m := onMochi.until(t, "active pets", func(m events.Message) bool {
		return strings.Contains(m.Data, `id="pet-active"`) && strings.Contains(m.Data, "Active pets (1)")
	})
	if !strings.Contains(m.Data, fmt.Sprintf(`hx-post="/pets/%d/treat"`, rex.ID)) || !strings.Contains(m.Data, ">Rex</bdi>") ||
		strings.Contains(m.Data, ">Mochi</bdi>") || !strings.HasPrefix(m.Data, `<section id="pet-active" class="active-pets" hx-swap-oob="true">`) {
		t.Errorf("active pets event %s", m.Data)
	}
	// Hoot's page (not watched yet) lists both, each with Give Treat.
	_, body := alice.do(t, "GET", fmt.Sprintf("/pets/%d", hoot.ID), "", nil)
	if !strings.Contains(body, "Active pets (2)") || strings.Count(body, ">Give Treat</button>") != 2 {
		t.Errorf("Hoot's page: %q", regexp.MustCompile(`(?s)<section id="pet-active".*?</section>`).FindString(body))
	}
}

func TestPetsPageAndItsStream(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	visitor := b.keeper(t)
	resp, body := visitor.do(t, "GET", "/pets", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), "phonehome_keeper=") ||
		!strings.Contains(body, "You have not adopted a pet yet") || !strings.Contains(body, "No pets match.") {
		t.Fatalf("first visit: %d", resp.StatusCode)
	}
	if !strings.Contains(body, `sse-connect="/events?stream=pets&amp;last_event_id=`) || !strings.Contains(body, `sse-swap="message,counts,adopted"`) {
		t.Error("list page is not live")
	}
	s := visitor.watch(t, live.PetsStream)
	other := b.keeper(t)
	p := other.adopt(t, "Biscuit", "dog")
	m := s.until(t, "adopted", func(m events.Message) bool { return m.Event == live.AdoptedEvent })
	if !strings.HasPrefix(m.Data, fmt.Sprintf(`<tbody hx-swap-oob="afterbegin:#pets-rows"><tr id="pet-row-%d">`, p.ID)) {
		t.Errorf("adopted event %.200q", m.Data)
	}
	s.until(t, "counts", func(m events.Message) bool {
		return m.Event == live.CountsEvent && strings.Contains(m.Data, `<span class="count-n">1</span><span class="count-label">alive</span>`)
	})

	mine := visitor.adopt(t, "Mochi", "cat")
	_, body = visitor.do(t, "GET", "/pets", "", nil)
	if !strings.Contains(body, fmt.Sprintf(`<a class="pet-card" href="/pets/%d">`, mine.ID)) || strings.Contains(body, fmt.Sprintf(`<a class="pet-card" href="/pets/%d">`, p.ID)) {
		t.Error("your pets are not the visitor's")
	}

	b.clock.Set(petEpoch.Add(b.sim.Rules().Lifespan()))
	if _, err := b.sim.Tick(context.Background(), b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	m = s.until(t, "died", func(m events.Message) bool { return m.Event == "" && strings.Contains(m.Data, "pet-row-") })
	if !strings.HasPrefix(m.Data, `<tr id="pet-row-`) || !strings.Contains(m.Data, `hx-swap-oob="true" class="dead"`) || !strings.Contains(m.Data, "☠️") {
		t.Errorf("death row %.300q", m.Data)
	}
	s.until(t, "counts", func(m events.Message) bool {
		return m.Event == live.CountsEvent && strings.Contains(m.Data, `<span class="count-n">2</span><span class="count-label">dead</span>`)
	})

	// Filters and search; a filtered page takes no new rows.
	_, body = visitor.do(t, "GET", "/pets?alive=false&q=moc", "", nil)
	if !strings.Contains(body, `<bdi class="pet-name">Mochi ☠️</bdi>`) || strings.Contains(body, "Biscuit") || strings.Contains(body, ",adopted") {
		t.Error("filtered page")
	}
	resp, body = visitor.do(t, "GET", "/pets/rows?alive=true", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "No pets match.") || !strings.Contains(body, `<section id="pet-counts" class="counts pet-counts" hx-swap-oob="true"`) {
		t.Errorf("rows: %d %s", resp.StatusCode, body)
	}
	if resp, _ := visitor.do(t, "GET", "/pets?alive=perhaps", "", nil); resp.StatusCode != 422 {
		t.Errorf("bad filter: %d", resp.StatusCode)
	}
	if resp, _ := visitor.do(t, "GET", "/pets/12345", "", nil); resp.StatusCode != 404 {
		t.Errorf("unknown pet page: %d", resp.StatusCode)
	}
	if resp, body := visitor.do(t, "GET", "/static/pets.css", "", nil); resp.StatusCode != 200 || !strings.Contains(body, ".pet-stats") {
		t.Errorf("pets.css: %d", resp.StatusCode)
	}
}
