package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// PetsStream is the event stream of the list of all pets: rows of pets that
// were adopted (event "adopted") or died (unnamed), the alive/dead counts
// ("counts") and "resync" when too much changed at once.
const PetsStream = "pets"

// AdoptedEvent names the event that carries a new pet's row.
const AdoptedEvent = "adopted"

// KeeperCookie holds a visitor's anonymous keeper id.
const KeeperCookie = "phonehome_keeper"

// keeperCookieAge is how long a keeper cookie lasts (about a year).
const keeperCookieAge = 365 * 24 * time.Hour

// myPetsShown is how many of the visitor's own pets the list page shows.
const myPetsShown = 24

// PetHub is what the pet pages need of the event hub.
type PetHub interface {
	hub
	Register(stream string)
	RegisterEphemeral(stream string, window int)
}

// petStreamWindow is how many events a pet's stream keeps for resume: each
// tick sends the whole state again, so a few are plenty, and a thousand
// watched pets must not each hold the hub's default window.
const petStreamWindow = 16

var _ PetHub = (*events.Hub)(nil)

// Pets serves LivePet: the pages, their forms, the JSON API, and the
// resolver of pet streams.
type Pets struct {
	Sim     *pets.Sim
	Store   *store.Store
	Views   *views.Views
	Hub     PetHub
	Version string
}

// Routes registers the pages, the forms and the JSON API.
func (h *Pets) Routes(e *echo.Echo) {
	e.GET("/pets", h.List)
	e.GET("/pets/rows", h.Rows)
	e.GET("/pets/new", h.NewForm)
	e.POST("/pets", h.Create)
	e.GET("/pets/:id", h.Show)
	e.POST("/pets/:id/feed", h.FeedForm)
	e.POST("/pets/:id/treat", h.TreatForm)
	e.GET("/api/pets", h.APIList)
	e.POST("/api/pets", h.APICreate)
	e.GET("/api/pets/:id", h.APIGet)
	e.POST("/api/pets/:id/feed", h.APIFeed)
	e.POST("/api/pets/:id/treat", h.APITreat)
}

// ResolveStream is the Events resolver for the pet streams: "pets", and
// "pet-{id}" for a living pet (a dead pet's page is not live). It registers
// the stream with the hub and reports whether it exists.
func (h *Pets) ResolveStream(ctx context.Context, name string) (bool, error) {
	if name == PetsStream {
		h.Hub.Register(name)
		return true, nil
	}
	id, ok := pets.ParseStream(name)
	if !ok {
		return false, nil
	}
	st, err := h.Sim.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.Alive {
		return false, nil
	}
	// Dropped again a minute after its last watcher leaves.
	h.Hub.RegisterEphemeral(name, petStreamWindow)
	return true, nil
}

// keeperPattern is a keeper id this server issued: 128 random bits in hex.
var keeperPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// keeper returns the visitor's keeper id, issuing a new one (and its cookie)
// to a visitor without a valid one. fresh reports a new keeper, who has no
// pets yet.
func keeper(c echo.Context) (id string, fresh bool) {
	if v, ok := c.Get("keeper").(string); ok {
		return v, c.Get("keeper_fresh") == true
	}
	if ck, err := c.Cookie(KeeperCookie); err == nil && keeperPattern.MatchString(ck.Value) {
		c.Set("keeper", ck.Value)
		return ck.Value, false
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	id = hex.EncodeToString(b[:])
	c.SetCookie(&http.Cookie{
		Name: KeeperCookie, Value: id, Path: "/",
		MaxAge: int(keeperCookieAge / time.Second), Expires: time.Now().Add(keeperCookieAge),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.IsTLS(),
	})
	c.Set("keeper", id)
	c.Set("keeper_fresh", true)
	return id, true
}

// PetView is a pet as pages show it.
type PetView struct {
	pets.State
	// Mine is true when the visitor is the pet's keeper.
	Mine bool
	// OOB marks the fragment for an out-of-band swap (live events).
	OOB bool
}

// LivedText is the pet's age as a duration: "3 h 25 min".
func (v PetView) LivedText() string { return durationText(v.Lived) }

// DiesInText is how long the pet has left: "13 h 52 min".
func (v PetView) DiesInText() string { return durationText(max(0, v.DiesAt.Sub(v.At))) }

// TicksLeft is how many ticks the pet has left to live.
func (v PetView) TicksLeft() int { return max(0, pets.LifeTicks+1-v.Age) }

// HungerLabel says in words how hungry the pet is.
func (v PetView) HungerLabel() string {
	switch {
	case v.Hunger >= pets.MaxHunger:
		return "starving"
	case v.Hunger >= 400:
		return "very hungry"
	case v.Hunger >= 250:
		return "hungry"
	case v.Hunger >= 100:
		return "peckish"
	case v.Hunger > 0:
		return "content"
	}
	return "full"
}

// Kind is "A cat", "An owl": the article and the species.
func (v PetView) Kind() string {
	if v.Species == "" {
		return "A pet"
	}
	if strings.ContainsRune("aeiou", rune(string(v.Species)[0])) {
		return "An " + string(v.Species)
	}
	return "A " + string(v.Species)
}

// Title is the pet's name as a title: with ☠️ once it has died.
func (v PetView) Title() string {
	if !v.Alive {
		return v.Name + " ☠️"
	}
	return v.Name
}

func durationText(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days %d h", int(d.Hours())/24, int(d.Hours())%24)
}

// ActiveView is the "Active pets" box of a pet's page.
type ActiveView struct {
	// Others are the other watched pets shown, each with Give Treat.
	Others []PetView
	// Total is how many other pets are watched.
	Total int
	OOB   bool
}

// More is how many watched pets are not listed.
func (a ActiveView) More() int { return max(0, a.Total-len(a.Others)) }

func activeView(a pets.Active, id int64, oob bool) ActiveView {
	others, total, _ := a.For(id)
	v := ActiveView{Total: total, OOB: oob, Others: make([]PetView, len(others))}
	for i, s := range others {
		v.Others[i] = PetView{State: s}
	}
	return v
}

// TreatsView is the visitor's treat budget.
type TreatsView struct {
	pets.Treats
	OOB bool
}

// RefillClock is the time of the refill: "14:05 UTC".
func (t TreatsView) RefillClock() string { return t.RefillAt.UTC().Format("15:04 MST") }

// Icons lists the treats, full ones first.
func (t TreatsView) Icons() []bool {
	out := make([]bool, pets.TreatsPerWindow)
	for i := range min(t.Left, len(out)) {
		out[i] = true
	}
	return out
}

// PetPage is the data of a pet's page, and of the fragment that replaces it
// when the pet dies.
type PetPage struct {
	views.Layout
	Pet         PetView
	Active      ActiveView
	Treats      TreatsView
	LastEventID int64
	Flash       *Flash
	// OOB marks the whole page body for an out-of-band swap (the death).
	OOB bool
}

// PetCountsView is the data of the counts on the list page.
type PetCountsView struct {
	C   store.PetCounts
	OOB bool
}

// PetsPage is the data of the list page.
type PetsPage struct {
	views.Layout
	Mine        []PetView
	NewKeeper   bool
	Rows        []PetView
	Counts      PetCountsView
	LastEventID int64
	Query       string
	AliveFilter string
	RowsURL     string
	NextURL     string
	// LiveAdoptions is true when new pets belong at the top of this listing
	// (the first page, newest first, not only the dead), so the page takes
	// "adopted" events.
	LiveAdoptions bool
	Tick          time.Duration
	Lifespan      time.Duration
}

// LifespanText is how long a pet lives, in words.
func (p PetsPage) LifespanText() string { return durationText(p.Lifespan) }

// NewPetPage is the data of the adoption form.
type NewPetPage struct {
	views.Layout
	Name       string
	Species    string
	Error      string
	ErrorField string
	AllSpecies []store.Species
}

// petListQuery is the parsed ?alive=&q=&limit=&cursor= of a pet listing.
type petListQuery struct {
	filter store.PetFilter
	alive  string
}

func parsePetListQuery(c echo.Context, defaultLimit int) (petListQuery, error) {
	lq := petListQuery{filter: store.PetFilter{Limit: defaultLimit}}
	switch a := c.QueryParam("alive"); a {
	case "":
	case "true", "false":
		alive := a == "true"
		lq.filter.Alive = &alive
		lq.alive = a
	default:
		return lq, invalid("alive must be true or false")
	}
	q := strings.TrimSpace(c.QueryParam("q"))
	pg, err := parsePaging(c, q)
	if err != nil {
		return lq, err
	}
	lq.filter.Query, lq.filter.After = pg.query, pg.after
	if pg.limit > 0 {
		lq.filter.Limit = pg.limit
	}
	return lq, nil
}

func (lq petListQuery) urlWith(path string, cursor store.Cursor) string {
	return pageURL(path, [][2]string{{"alive", lq.alive}}, lq.filter.Query, cursor)
}

// List renders /pets: the visitor's pets, then all pets, searchable and
// paged, with the alive/dead counts. It is live on the pets stream.
func (h *Pets) List(c echo.Context) error {
	lq, err := parsePetListQuery(c, pageSize)
	if err != nil {
		return err
	}
	p, err := h.listPage(c, lq)
	if err != nil {
		return err
	}
	return h.page(c, http.StatusOK, "pets", p)
}

func (h *Pets) listPage(c echo.Context, lq petListQuery) (PetsPage, error) {
	ctx := c.Request().Context()
	// Take the event id first: anything published after it is resent on connect.
	lastID := h.Hub.LastID()
	rows, next, err := h.Store.ListPets(ctx, lq.filter)
	if err != nil {
		return PetsPage{}, err
	}
	kid, fresh := keeper(c)
	p := PetsPage{
		Layout:      views.Layout{Nav: "pets", Version: h.Version},
		NewKeeper:   fresh,
		Rows:        h.petViews(rows, kid),
		Counts:      PetCountsView{C: h.Sim.Counts()},
		LastEventID: lastID,
		Query:       lq.filter.Query,
		AliveFilter: lq.alive,
		RowsURL:     lq.urlWith("/pets/rows", lq.filter.After),
		LiveAdoptions: lq.filter.Query == "" && lq.filter.After.IsZero() &&
			(lq.filter.Alive == nil || *lq.filter.Alive),
		Tick:     h.Sim.Rules().Tick,
		Lifespan: h.Sim.Rules().Lifespan(),
	}
	if !next.IsZero() {
		p.NextURL = lq.urlWith("/pets", next)
	}
	if !fresh {
		mine, err := h.Store.KeeperPets(ctx, kid, myPetsShown)
		if err != nil {
			return PetsPage{}, err
		}
		p.Mine = h.petViews(mine, kid)
	}
	return p, nil
}

func (h *Pets) petViews(rows []store.Pet, keeperID string) []PetView {
	out := make([]PetView, len(rows))
	for i, p := range rows {
		out[i] = PetView{State: h.Sim.State(p), Mine: p.KeeperID == keeperID}
	}
	return out
}

// Rows renders the table body and the counts, for the list page to reload
// after a resync event.
func (h *Pets) Rows(c echo.Context) error {
	lq, err := parsePetListQuery(c, pageSize)
	if err != nil {
		return err
	}
	p, err := h.listPage(c, lq)
	if err != nil {
		return err
	}
	rows, err := h.Views.Fragment("pet_rows", p)
	if err != nil {
		return err
	}
	p.Counts.OOB = true
	counts, err := h.Views.Fragment("pet_counts", p.Counts)
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, append(rows, counts...))
}

func (h *Pets) page(c echo.Context, status int, name string, data any) error {
	html, err := h.Views.Page(name, data)
	if err != nil {
		return err
	}
	return c.HTMLBlob(status, html)
}

// NewForm renders the adoption form.
func (h *Pets) NewForm(c echo.Context) error {
	keeper(c)
	return h.page(c, http.StatusOK, "pets_new", NewPetPage{
		Layout: views.Layout{Nav: "pets", Version: h.Version}, Species: string(store.SpeciesCat), AllSpecies: store.AllSpecies,
	})
}

// Create adopts a pet from the form and goes to its page; an invalid name or
// species re-renders the form with the message and what was entered (422).
func (h *Pets) Create(c echo.Context) error {
	kid, _ := keeper(c)
	name, species := c.FormValue("name"), c.FormValue("species")
	st, err := h.Sim.Adopt(c.Request().Context(), kid, name, species)
	var ve *pets.ValidationError
	if errors.As(err, &ve) {
		return h.page(c, http.StatusUnprocessableEntity, "pets_new", NewPetPage{
			Layout: views.Layout{Nav: "pets", Version: h.Version},
			Name:   name, Species: species, Error: ve.Message, ErrorField: ve.Field, AllSpecies: store.AllSpecies,
		})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/pets/"+strconv.FormatInt(st.ID, 10))
}

func petID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, echo.NewHTTPError(http.StatusNotFound, "no pet "+strconv.Quote(raw))
	}
	return id, nil
}

// Show renders a pet's page: live over its stream while the pet is alive.
func (h *Pets) Show(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	lastID := h.Hub.LastID()
	st, err := h.Sim.Get(ctx, id)
	if err != nil {
		return petError(id, err)
	}
	kid, _ := keeper(c)
	p := PetPage{
		Layout:      views.Layout{Nav: "pets", Version: h.Version},
		Pet:         PetView{State: st, Mine: st.KeeperID == kid},
		LastEventID: lastID,
	}
	if st.Alive {
		// This page opens the pet's stream as soon as it loads: count it.
		p.Pet.Viewers++
		active, err := h.Sim.ActivePets(ctx)
		if err != nil {
			return err
		}
		p.Active = activeView(active, id, false)
		treats, err := h.Sim.Treats(ctx, kid)
		if err != nil {
			return err
		}
		p.Treats = TreatsView{Treats: treats}
	}
	return h.page(c, http.StatusOK, "pet", p)
}

// petError maps the sim's refusals to statuses: someone else's pet (feed) or
// one's own (treat) 403, a dead or unwatched pet or no treats left 409, an
// invalid new pet 422, an unknown one 404.
func petError(id int64, err error) error {
	var re *pets.RuleError
	var ve *pets.ValidationError
	switch {
	case errors.As(err, &ve):
		return invalid(ve.Message)
	case errors.As(err, &re):
		if errors.Is(re.Rule, pets.ErrNotYours) || errors.Is(re.Rule, pets.ErrOwnPet) {
			return echo.NewHTTPError(http.StatusForbidden, re.Message)
		}
		return echo.NewHTTPError(http.StatusConflict, re.Message)
	case errors.Is(err, store.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no pet %d", id))
	}
	return err
}

// isHtmx reports a request made by htmx, answered with a fragment.
func isHtmx(c echo.Context) bool { return c.Request().Header.Get("HX-Request") != "" }

// flashOrError answers a refused form action: htmx swaps only successful
// responses, so it gets the message as a 200 fragment; a plain form gets the
// error page with the status.
func (h *Pets) flashOrError(c echo.Context, id int64, err error) error {
	err = petError(id, err)
	var he *echo.HTTPError
	if isHtmx(c) && errors.As(err, &he) && he.Code < 500 {
		msg, _ := he.Message.(string)
		return h.fragments(c, fragment{"flash", Flash{Message: msg, Error: true}})
	}
	return err
}

type fragment struct {
	name string
	data any
}

func (h *Pets) fragments(c echo.Context, parts ...fragment) error {
	var out []byte
	for _, p := range parts {
		html, err := h.Views.Fragment(p.name, p.data)
		if err != nil {
			return err
		}
		out = append(out, html...)
	}
	return c.HTMLBlob(http.StatusOK, out)
}

// FeedForm is the Feed button of a keeper's own pet: htmx gets a message and
// the new state; a browser without JavaScript is sent back to the page.
func (h *Pets) FeedForm(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	kid, _ := keeper(c)
	st, err := h.Sim.Feed(c.Request().Context(), kid, id)
	if err != nil {
		return h.flashOrError(c, id, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, "/pets/"+strconv.FormatInt(id, 10))
	}
	st.Viewers = max(st.Viewers, 1) // the page that asked is watching
	return h.fragments(c,
		fragment{"flash", Flash{Message: fmt.Sprintf("You fed %s. Hunger is now %d of %d.", st.Name, st.Hunger, pets.MaxHunger)}},
		fragment{"pet_stats", PetView{State: st, Mine: true, OOB: true}})
}

// backPath is where a plain form goes back to: the pet page it came from
// (by its same-origin Referer), else fallback.
var backPath = regexp.MustCompile(`^/pets(/[0-9]+)?$`)

func back(c echo.Context, fallback string) string {
	u, err := url.Parse(c.Request().Referer())
	if err != nil || u.Host != c.Request().Host || !backPath.MatchString(u.Path) {
		return fallback
	}
	return u.Path
}

// TreatForm is the Give Treat button next to another watched pet: htmx gets
// a message and the visitor's treats left; a browser without JavaScript goes
// back to the page it came from.
func (h *Pets) TreatForm(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	kid, _ := keeper(c)
	st, treats, err := h.Sim.Treat(c.Request().Context(), kid, id)
	if err != nil {
		return h.flashOrError(c, id, err)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, back(c, "/pets/"+strconv.FormatInt(id, 10)))
	}
	left := "no treats left"
	switch treats.Left {
	case 1:
		left = "1 treat left"
	case 0:
	default:
		left = fmt.Sprintf("%d treats left", treats.Left)
	}
	return h.fragments(c,
		fragment{"flash", Flash{Message: fmt.Sprintf("You gave %s a treat (hunger now %d); you have %s.", st.Name, st.Hunger, left)}},
		fragment{"pet_treats", TreatsView{Treats: treats, OOB: true}})
}

// PetJSON is a pet in the JSON API.
type PetJSON struct {
	ID      int64      `json:"id"`
	Name    string     `json:"name"`
	Species string     `json:"species"`
	Age     int        `json:"age"`
	Hunger  int        `json:"hunger"`
	Alive   bool       `json:"alive"`
	BornAt  time.Time  `json:"born_at"`
	DiedAt  *time.Time `json:"died_at"`
	Viewers int        `json:"viewers"`
}

func petJSON(s pets.State) PetJSON {
	j := PetJSON{
		ID: s.ID, Name: s.Name, Species: string(s.Species), Age: s.Age, Hunger: s.Hunger, Alive: s.Alive,
		BornAt: s.BornAt.UTC(), Viewers: s.Viewers,
	}
	if !s.DiedAt.IsZero() {
		t := s.DiedAt.UTC()
		j.DiedAt = &t
	}
	return j
}

// APIList answers GET /api/pets?alive=&q=&limit=&cursor=.
func (h *Pets) APIList(c echo.Context) error {
	lq, err := parsePetListQuery(c, 50)
	if err != nil {
		return err
	}
	rows, next, err := h.Store.ListPets(c.Request().Context(), lq.filter)
	if err != nil {
		return err
	}
	items := make([]PetJSON, len(rows))
	for i, p := range rows {
		items[i] = petJSON(h.Sim.State(p))
	}
	return listJSON(c, items, next)
}

// APIGet answers GET /api/pets/{id}.
func (h *Pets) APIGet(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	st, err := h.Sim.Get(c.Request().Context(), id)
	if err != nil {
		return petError(id, err)
	}
	return c.JSON(http.StatusOK, petJSON(st))
}

// APICreate answers POST /api/pets {"name","species"} with 201 and the new
// pet, adopted by the visitor's keeper (a new one, with its cookie, when the
// request has none).
func (h *Pets) APICreate(c echo.Context) error {
	var in struct {
		Name    string `json:"name"`
		Species string `json:"species"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	kid, _ := keeper(c)
	st, err := h.Sim.Adopt(c.Request().Context(), kid, in.Name, in.Species)
	if err != nil {
		return petError(0, err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/pets/"+strconv.FormatInt(st.ID, 10))
	return c.JSON(http.StatusCreated, petJSON(st))
}

// decodeJSON reads a JSON object body: 415 for another content type, 400
// for malformed JSON or unknown fields, 413 past the body limit.
func decodeJSON(c echo.Context, v any) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "send JSON with Content-Type: application/json")
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, io.EOF):
		return badRequest("malformed JSON: the body is empty")
	case err != nil:
		return badRequest("malformed JSON: " + err.Error())
	}
	return nil
}

// APIFeed answers POST /api/pets/{id}/feed with the fed pet: 403 for another
// keeper's pet, 409 for a dead one.
func (h *Pets) APIFeed(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	kid, _ := keeper(c)
	st, err := h.Sim.Feed(c.Request().Context(), kid, id)
	if err != nil {
		return petError(id, err)
	}
	return c.JSON(http.StatusOK, petJSON(st))
}

// TreatJSON is the answer to a treat.
type TreatJSON struct {
	Pet        PetJSON    `json:"pet"`
	TreatsLeft int        `json:"treats_left"`
	RefillAt   *time.Time `json:"treats_refill_at"`
}

// APITreat answers POST /api/pets/{id}/treat with the pet and the giver's
// treats left: 403 for one's own pet, 409 for a dead pet, one nobody is
// watching, or no treats left.
func (h *Pets) APITreat(c echo.Context) error {
	id, err := petID(c)
	if err != nil {
		return err
	}
	kid, _ := keeper(c)
	st, treats, err := h.Sim.Treat(c.Request().Context(), kid, id)
	if err != nil {
		return petError(id, err)
	}
	out := TreatJSON{Pet: petJSON(st), TreatsLeft: treats.Left}
	if !treats.RefillAt.IsZero() {
		t := treats.RefillAt.UTC()
		out.RefillAt = &t
	}
	return c.JSON(http.StatusOK, out)
}

// PetFeed renders what the simulation shows into the pages' own partials and
// publishes them: a watched pet's state and death on its stream pet-{id}, the
// active-pets box on every watched pet's stream, and rows and counts on the
// pets stream. It implements pets.Publisher.
type PetFeed struct {
	views *views.Views
	hub   hub
	log   *slog.Logger
}

var _ pets.Publisher = (*PetFeed)(nil)

// NewPetFeed makes the feed.
func NewPetFeed(v *views.Views, h hub, logger *slog.Logger) *PetFeed {
	return &PetFeed{views: v, hub: h, log: logger}
}

func (f *PetFeed) publish(stream, event, partial string, data any) {
	html, err := f.views.Fragment(partial, data)
	if err != nil {
		f.log.Error("render pet fragment", "partial", partial, "err", err)
		return
	}
	f.publishHTML(stream, event, html)
}

func (f *PetFeed) publishHTML(stream, event string, html []byte) {
	if _, err := f.hub.Publish(stream, event, html); err != nil {
		f.log.Debug("publish pet event", "stream", stream, "err", err)
	}
}

// Live publishes watched pets' stats (age, hunger, watchers), each on its
// own stream. A tick's worth is rendered on every core.
func (f *PetFeed) Live(states []pets.State) {
	const perWorker = 64
	workers := min(runtime.GOMAXPROCS(0), (len(states)+perWorker-1)/perWorker)
	if workers <= 1 {
		for _, s := range states {
			f.publish(pets.Stream(s.ID), "", "pet_stats", PetView{State: s, OOB: true})
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(states); i += workers {
				s := states[i]
				f.publish(pets.Stream(s.ID), "", "pet_stats", PetView{State: s, OOB: true})
			}
		})
	}
	wg.Wait()
}

// Died replaces the whole of the pet's page with its final, not live, state.
func (f *PetFeed) Died(s pets.State) {
	f.publish(pets.Stream(s.ID), "", "pet_main", PetPage{Pet: PetView{State: s}, OOB: true})
}

// Active publishes every watched pet's "Active pets" box. All pages whose pet
// is not among the few listed get the same box, rendered once.
func (f *PetFeed) Active(a pets.Active) {
	var shared []byte
	for _, id := range a.Watched {
		if _, _, isShared := a.For(id); isShared && shared != nil {
			f.publishHTML(pets.Stream(id), "", shared)
			continue
		}
		v := activeView(a, id, true)
		html, err := f.views.Fragment("pet_active", v)
		if err != nil {
			f.log.Error("render active pets", "err", err)
			return
		}
		if _, _, isShared := a.For(id); isShared {
			shared = html
		}
		f.publishHTML(pets.Stream(id), "", html)
	}
}

// Listed publishes a pet's row on the list of all pets: a new one to put at
// the top (event "adopted"), or one that changed in place.
func (f *PetFeed) Listed(s pets.State, adopted bool) {
	if adopted {
		f.publish(PetsStream, AdoptedEvent, "pet_adopted", PetView{State: s})
		return
	}
	f.publish(PetsStream, "", "pet_row", PetView{State: s, OOB: true})
}

// Resync tells the list pages to reload their table.
func (f *PetFeed) Resync() {
	f.publishHTML(PetsStream, events.ResyncEvent, []byte("resync"))
}

// Counts publishes the alive/dead counts.
func (f *PetFeed) Counts(c store.PetCounts) {
	f.publish(PetsStream, CountsEvent, "pet_counts", PetCountsView{C: c, OOB: true})
}
