package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/store"
)

// petBundle is a testServer whose LivePet the tests run by hand.
type petBundle struct{ *testServer }

func petSetup(t *testing.T) *petBundle {
	t.Helper()
	return &petBundle{setupServer(t, serverOptions{})}
}

// keeper is a browser: its own cookie jar, so its own keeper.
type keeper struct {
	b      *petBundle
	client *http.Client
}

func (b *petBundle) keeper(t *testing.T) *keeper {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := noRedirects(b.srv.Client())
	c.Jar = jar
	return &keeper{b: b, client: c}
}

// mochiAndAnother is petSetup with two keepers: one who has adopted
// Mochi the cat, then another who has no pet yet.
func mochiAndAnother(t *testing.T) (b *petBundle, owner *keeper, mochi petJSON, other *keeper) {
	t.Helper()
	b = petSetup(t)
	owner, mochi = b.withMochi(t)
	return b, owner, mochi, b.keeper(t)
}

// withMochi is a new keeper who has adopted Mochi the cat: how most pet
// tests begin.
func (b *petBundle) withMochi(t *testing.T) (*keeper, petJSON) {
	t.Helper()
	k := b.keeper(t)
	return k, k.adopt(t, "Mochi", "cat")
}

func (k *keeper) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	return request(t, k.client, method, k.b.srv.URL+path, strings.NewReader(body), header)
}

var jsonHeader = map[string]string{"Content-Type": "application/json"}

// adopt adopts a pet through the API and returns it.
func (k *keeper) adopt(t *testing.T, name, species string) petJSON {
	t.Helper()
	resp, body := k.do(t, "POST", "/api/pets", fmt.Sprintf(`{"name":%q,"species":%q}`, name, species), jsonHeader)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adopt %s: %d %s", name, resp.StatusCode, body)
	}
	return decodePet(t, body)
}

func (k *keeper) get(t *testing.T, id int64) petJSON {
	t.Helper()
	resp, body := k.do(t, "GET", fmt.Sprintf("/api/pets/%d", id), "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("get pet %d: %d %s", id, resp.StatusCode, body)
	}
	return decodePet(t, body)
}

// petJSON is a pet as the API answers it, with its times kept as the
// strings sent so that tests check their format too. (TestPetAPIShapes
// checks the key set on its own, so the embedded type cannot hide a renamed
// key.)
type petJSON struct {
	handlers.PetJSON
	BornAt string  `json:"born_at"`
	DiedAt *string `json:"died_at"`
}

func decodePet(t *testing.T, body string) petJSON {
	t.Helper()
	var p petJSON
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("pet JSON %q: %v", body, err)
	}
	return p
}

// stream is one open event stream read in the background.
type stream struct {
	msgs   <-chan events.Message
	cancel func()
}

// watch opens an event stream through the router, as a pet page does.
func (k *keeper) watch(t *testing.T, name string) *stream {
	t.Helper()
	msgs, _, stop := openStream(t, k.client, k.b.srv.URL+"/events?stream="+name)
	return &stream{msgs: msgs, cancel: stop}
}

// until reads events until one satisfies ok, failing after 10 s.
func (s *stream) until(t *testing.T, what string, ok func(events.Message) bool) events.Message {
	t.Helper()
	m, _ := until(t, s.msgs, what, ok)
	return m
}

func TestPetAPIShapes(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k := b.keeper(t)
	resp, body := k.do(t, "POST", "/api/pets", `{"name":"Ember","species":"fox"}`, jsonHeader)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for key := range raw {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	if got := strings.Join(keys, ","); got != "age,alive,born_at,died_at,hunger,id,name,species,viewers" {
		t.Errorf("pet keys %s", got)
	}
	p := decodePet(t, body)
	if p.Name != "Ember" || p.Species != "fox" || p.Age != 0 || p.Hunger != 250 || !p.Alive || p.DiedAt != nil || p.Viewers != 0 ||
		p.BornAt != "2030-01-02T03:04:05Z" {
		t.Errorf("created %+v", p)
	}
	if loc := resp.Header.Get("Location"); loc != fmt.Sprintf("/api/pets/%d", p.ID) {
		t.Errorf("Location %q", loc)
	}
	cookie := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"phonehome_keeper=", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=31536000"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %s", cookie, want)
		}
	}
	if !regexp.MustCompile(`phonehome_keeper=[0-9a-f]{32};`).MatchString(cookie) {
		t.Errorf("keeper id is not 128 random bits in hex: %q", cookie)
	}

	b.clock.Set(petEpoch.Add(3*petTick + time.Second))
	if got := k.get(t, p.ID); got.Age != 3 || got.Hunger != 265 {
		t.Errorf("3 ticks later: %+v", got)
	}

	// Dead: died_at is the instant of death.
	b.clock.Set(petEpoch.Add(b.sim.Rules().Lifespan() + time.Hour))
	got := k.get(t, p.ID)
	if got.Alive || got.Age != 10001 || got.DiedAt == nil || *got.DiedAt != petEpoch.Add(10001*petTick).Format(time.RFC3339) {
		t.Errorf("dead pet %+v (died_at %v)", got, got.DiedAt)
	}
}

func TestPetAPIListPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k := b.keeper(t)
	var ids []int64
	for i := range 5 {
		ids = append(ids, k.adopt(t, fmt.Sprintf("Pet %d", i), "cat").ID)
		b.clock.Set(b.clock.Now().Add(time.Hour))
	}
	// The first two die.
	b.clock.Set(petEpoch.Add(b.sim.Rules().Lifespan() + time.Hour + time.Minute))
	if _, err := b.sim.Tick(context.Background(), b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	list := func(query string) []int64 {
		t.Helper()
		var out []int64
		path := "/api/pets?limit=2&" + query
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("cursor never ends")
			}
			resp, body := k.do(t, "GET", path, "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
			}
			var page struct {
				Items      []petJSON `json:"items"`
				NextCursor *string   `json:"next_cursor"`
			}
			if err := json.Unmarshal([]byte(body), &page); err != nil {
				t.Fatal(err)
			}
			for _, p := range page.Items {
				out = append(out, p.ID)
			}
			if page.NextCursor == nil {
				return out
			}
			path = "/api/pets?limit=2&" + query + "&cursor=" + url.QueryEscape(*page.NextCursor)
		}
	}
	tests := []struct {
		query string
		want  []int64
	}{
		{"", []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"alive=true", []int64{ids[4], ids[3], ids[2]}},
		{"alive=false", []int64{ids[1], ids[0]}},
		{"q=pet+3", []int64{ids[3]}},
	}
	for _, tt := range tests {
		if got := list(tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("%q: %v, want %v", tt.query, got, tt.want)
		}
	}
}

func TestPetAPIErrors(t *testing.T) {
	t.Parallel()
	b, _, p, k := mochiAndAnother(t)
	checkAnswers(t, func(t *testing.T, method, path, body string, header map[string]string) (*http.Response, string) {
		return k.do(t, method, path, body, header)
	}, []answerCase{
		{"not JSON", "POST", "/api/pets", map[string]string{"Content-Type": "text/plain"}, `{"name":"Rex","species":"dog"}`, 415, "Content-Type: application/json"},
		{"no content type", "POST", "/api/pets", nil, `{"name":"Rex","species":"dog"}`, 415, `{"error":`},
		{"malformed JSON", "POST", "/api/pets", jsonHeader, `{"name":`, 400, "malformed JSON"},
		{"empty body", "POST", "/api/pets", jsonHeader, ``, 400, "body is empty"},
		{"unknown field", "POST", "/api/pets", jsonHeader, `{"name":"Rex","specie":"dog"}`, 400, "unknown field"},
		{"two values", "POST", "/api/pets", jsonHeader, `{"name":"Rex","species":"dog"} {}`, 400, "malformed JSON"},
		{"an array", "POST", "/api/pets", jsonHeader, `[]`, 400, `{"error":"malformed JSON: the body must be a JSON object, not an array"}`},
		{"a number for the name", "POST", "/api/pets", jsonHeader, `{"name":12,"species":"dog"}`, 400, `{"error":"malformed JSON: name must be a string, not a number"}`},
		{"a syntax error", "POST", "/api/pets", jsonHeader, `{"name" "Rex"}`, 400, "after object key (at byte 9)"},
		{"cut short", "POST", "/api/pets", jsonHeader, `{"name":"Rex"`, 400, `{"error":"malformed JSON: the body ends before its JSON does"}`},
		{"name of 2 characters", "POST", "/api/pets", jsonHeader, `{"name":"Re","species":"dog"}`, 422, "3 to 100 characters"},
		{"name of 101 characters", "POST", "/api/pets", jsonHeader, `{"name":"` + strings.Repeat("x", 101) + `","species":"dog"}`, 422, "this one has 101"},
		{"unknown species", "POST", "/api/pets", jsonHeader, `{"name":"Rex","species":"dragon"}`, 422, "unknown species"},
		{"no species", "POST", "/api/pets", jsonHeader, `{"name":"Rex"}`, 422, "choose a species"},
		{"too large", "POST", "/api/pets", jsonHeader, `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too large"},
		{"unknown pet", "GET", "/api/pets/999", nil, "", 404, `{"error":"no pet 999"}`},
		{"not an id", "GET", "/api/pets/abc", nil, "", 404, `no pet \"abc\"`},
		{"feed unknown pet", "POST", "/api/pets/999/feed", nil, "", 404, "no pet 999"},
		{"feed someone else's pet", "POST", fmt.Sprintf("/api/pets/%d/feed", p.ID), nil, "", 403, "Mochi is not your pet"},
		{"treat nobody watches", "POST", fmt.Sprintf("/api/pets/%d/treat", p.ID), nil, "", 409, "nobody is watching Mochi"},
		{"alive not a boolean", "GET", "/api/pets?alive=maybe", nil, "", 422, "alive must be true or false"},
		{"limit not a number", "GET", "/api/pets?limit=ten", nil, "", 400, "limit must be a whole number"},
		{"limit too big", "GET", "/api/pets?limit=1001", nil, "", 422, "between 1 and 1000"},
		{"bad cursor", "GET", "/api/pets?cursor=%25%25", nil, "", 400, "malformed cursor"},
		{"wrong method", "DELETE", "/api/pets", nil, "", 405, `{"error":`},
	})
	if got := k.get(t, p.ID); got.Hunger != 250 {
		t.Errorf("refused requests changed hunger to %d", got.Hunger)
	}
	if c, _ := b.st.CountPets(context.Background()); c.Total() != 1 {
		t.Errorf("refused requests adopted pets: %+v", c)
	}
}

func TestFeedOnlyOwnLivingPetDownToZero(t *testing.T) {
	t.Parallel()
	b, owner, p, stranger := mochiAndAnother(t)
	path := fmt.Sprintf("/api/pets/%d/feed", p.ID)
	for _, want := range []int{150, 50, 0, 0} {
		resp, body := owner.do(t, "POST", path, "", nil)
		if resp.StatusCode != 200 || decodePet(t, body).Hunger != want {
			t.Fatalf("feed: %d %s; want hunger %d", resp.StatusCode, body, want)
		}
	}
	if resp, body := stranger.do(t, "POST", path, "", nil); resp.StatusCode != 403 || !strings.Contains(body, "only its keeper can feed it") {
		t.Errorf("stranger: %d %s", resp.StatusCode, body)
	}
	// The feed was committed before the answer: a second connection to the
	// file (as after a crash) sees it.
	other, err := store.Open(context.Background(), b.path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if row, err := other.GetPet(context.Background(), p.ID); err != nil || row.HungerBase != 0 {
		t.Errorf("stored %+v, %v", row, err)
	}
	b.clock.Set(petEpoch.Add(b.sim.Rules().Lifespan()))
	if resp, body := owner.do(t, "POST", path, "", nil); resp.StatusCode != 409 || !strings.Contains(body, "Mochi has died") {
		t.Errorf("dead: %d %s", resp.StatusCode, body)
	}
}

func TestNamesAreStoredVerbatimAndShownEscaped(t *testing.T) {
	t.Parallel()
	b := petSetup(t)
	k := b.keeper(t)
	const name = `<script>alert("pwned")</script> & co`
	form := url.Values{"name": {name}, "species": {"crab"}}.Encode()
	resp, body := k.do(t, "POST", "/pets", form, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/pets/") {
		t.Fatalf("adopt form: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	page := resp.Header.Get("Location")
	id := strings.TrimPrefix(page, "/pets/")
	var stored string
	if err := b.st.Reader.Get(&stored, b.st.Rebind("SELECT name FROM pets WHERE id = ?"), id); err != nil || stored != name {
		t.Errorf("stored %q, %v", stored, err)
	}
	escaped := `&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; co`
	for _, path := range []string{page, "/pets", "/pets?q=%3Cscr"} {
		_, body := k.do(t, "GET", path, "", nil)
		if !strings.Contains(body, escaped) || strings.Contains(body, "<script>alert") {
			t.Errorf("%s does not escape the name", path)
		}
	}
	if _, body := k.do(t, "GET", "/api/pets/"+id, "", nil); decodePet(t, body).Name != name {
		t.Errorf("API name %s", body)
	}
}
