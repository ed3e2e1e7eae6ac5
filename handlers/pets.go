package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/live"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

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
	pages := e.Group("/pets")
	pages.GET("", h.List)
	pages.GET("/rows", h.Rows)
	pages.GET("/new", h.NewForm)
	pages.POST("", h.Create)
	pet := pages.Group("/:id")
	pet.GET("", h.Show)
	pet.POST("/feed", h.FeedForm)
	pet.POST("/treat", h.TreatForm)
	api := e.Group("/api/pets")
	api.GET("", h.APIList)
	api.POST("", h.APICreate)
	api.GET("/:id", h.APIGet)
	api.POST("/:id/feed", h.APIFeed)
	api.POST("/:id/treat", h.APITreat)
}

// ResolveStream is the Events resolver for the pet streams: "pets", and
// "pet-{id}" for a living pet (a dead pet's page is not live). It registers
// the stream with the hub and reports whether it exists.
func (h *Pets) ResolveStream(ctx context.Context, name string) (bool, error) {
	if name == live.PetsStream {
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
	h.Hub.RegisterEphemeral(name, live.PetStreamWindow)
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
	f := &lq.filter
	err := parsePaging(c, strings.TrimSpace(c.QueryParam("q")), &f.Query, &f.Limit, &f.After)
	return lq, err
}

func (lq petListQuery) urlWith(path string, cursor store.Cursor) string {
	return pageURL(path, [][2]string{{"alive", lq.alive}}, lq.filter.Query, cursor)
}

// List renders /pets: the visitor's pets, then all pets, searchable and
// paged, with the alive/dead counts. It is live on the pets stream.
func (h *Pets) List(c echo.Context) error {
	return renderWith(c, h.Views, views.PagePets, h.listPage)
}

// listPage is the page the request's filter and cursor select.
func (h *Pets) listPage(c echo.Context) (views.PetsPage, error) {
	lq, l, err := readListing(c, h.Hub, live.PetsStream, pageSize, parsePetListQuery, h.list)
	if err != nil {
		return views.PetsPage{}, err
	}
	kid, fresh := keeper(c)
	p := views.PetsPage{
		Layout:      views.Layout{Nav: "pets", Version: h.Version},
		NewKeeper:   fresh,
		Rows:        h.petViews(l.rows, kid),
		Counts:      views.PetCountsView{C: live.PetCountsView(h.Sim.Counts())},
		LastEventID: l.lastID,
		Query:       lq.filter.Query,
		AliveFilter: lq.alive,
		RowsURL:     lq.urlWith("/pets/rows", lq.filter.After),
		LiveAdoptions: lq.filter.Query == "" && lq.filter.After.IsZero() &&
			(lq.filter.Alive == nil || *lq.filter.Alive),
		Tick:     h.Sim.Rules().Tick,
		Lifespan: h.Sim.Rules().Lifespan(),
	}
	if !l.next.IsZero() {
		p.NextURL = lq.urlWith("/pets", l.next)
	}
	if !fresh {
		mine, err := h.Store.KeeperPets(c.Request().Context(), kid, myPetsShown)
		if err != nil {
			return views.PetsPage{}, err
		}
		p.Mine = h.petViews(mine, kid)
	}
	return p, nil
}

func (h *Pets) petViews(rows []store.Pet, keeperID string) []views.PetView {
	out := make([]views.PetView, len(rows))
	for i, p := range rows {
		out[i] = views.PetView{State: h.Sim.State(p), Mine: p.KeeperID == keeperID}
	}
	return out
}

// Rows renders the table body and the counts, for the list page to reload
// after a resync event.
func (h *Pets) Rows(c echo.Context) error {
	p, err := h.listPage(c)
	if err != nil {
		return err
	}
	p.Counts.OOB = true
	return fragments(c, h.Views,
		views.Part{Name: views.PartialPetRows, Data: p},
		views.Part{Name: views.PartialPetCounts, Data: p.Counts})
}

// allSpecies are the species the adoption form offers.
func allSpecies() []string {
	out := make([]string, len(store.AllSpecies))
	for i, sp := range store.AllSpecies {
		out[i] = string(sp)
	}
	return out
}

// NewForm renders the adoption form.
func (h *Pets) NewForm(c echo.Context) error {
	keeper(c)
	return render(c, h.Views, http.StatusOK, views.PageNewPet, views.NewPetPage{
		Layout: views.Layout{Nav: "pets", Version: h.Version}, Species: string(store.SpeciesCat), AllSpecies: allSpecies(),
	})
}

// Create adopts a pet from the form and goes to its page; an invalid name or
// species re-renders the form with the message and what was entered (422).
func (h *Pets) Create(c echo.Context) error {
	kid, _ := keeper(c)
	name, species := c.FormValue("name"), c.FormValue("species")
	st, err := h.Sim.Adopt(c.Request().Context(), kid, name, species)
	if err != nil {
		return refused(err, func(status int, flash *views.Flash) error {
			var ve *pets.ValidationError
			if !errors.As(err, &ve) {
				return err // the error page
			}
			return render(c, h.Views, status, views.PageNewPet, views.NewPetPage{
				Layout: views.Layout{Nav: "pets", Version: h.Version},
				Name:   name, Species: species, Error: ve.Message, ErrorField: ve.Field, AllSpecies: allSpecies(),
			})
		})
	}
	return c.Redirect(http.StatusSeeOther, "/pets/"+strconv.FormatInt(st.ID, 10))
}

func petID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound("no pet " + strconv.Quote(raw))
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
	lastID := h.Hub.StreamLastID(live.PetStream(id))
	st, err := h.Sim.Get(ctx, id)
	if err != nil {
		return petError(id, err)
	}
	kid, _ := keeper(c)
	p := views.PetPage{
		Layout:      views.Layout{Nav: "pets", Version: h.Version},
		Pet:         views.PetView{State: st, Mine: st.KeeperID == kid},
		LastEventID: lastID,
	}
	if st.Alive {
		// This page opens the pet's stream as soon as it loads: count it.
		p.Pet.Viewers++
		active, err := h.Sim.ActivePets(ctx)
		if err != nil {
			return err
		}
		p.Active = views.NewActiveView(active, id, false)
		treats, err := h.Sim.Treats(ctx, kid)
		if err != nil {
			return err
		}
		p.Treats = views.TreatsView{Treats: treats}
	}
	return render(c, h.Views, http.StatusOK, views.PagePet, p)
}

// petError names the pet in a not-found; the error table gives the rest
// its status.
func petError(id int64, err error) error { return showAs(err, fmt.Sprintf("no pet %d", id)) }

// FeedForm is the Feed button of a keeper's own pet: htmx gets a message and
// the new state; a browser without JavaScript is sent back to the page.
func (h *Pets) FeedForm(c echo.Context) error {
	st, err := h.feed(c)
	if err != nil {
		return refused(err, nil)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, "/pets/"+strconv.FormatInt(st.ID, 10))
	}
	st.Viewers = max(st.Viewers, 1) // the page that asked is watching
	return fragments(c, h.Views,
		views.Part{Name: views.PartialFlash, Data: views.Flash{Message: views.FedMessage(st)}},
		views.Part{Name: views.PartialPetStats, Data: views.PetView{State: st, Mine: true, OOB: true}})
}

// feed feeds the pet of the request's path for its visitor.
func (h *Pets) feed(c echo.Context) (pets.State, error) {
	id, err := petID(c)
	if err != nil {
		return pets.State{}, err
	}
	kid, _ := keeper(c)
	st, err := h.Sim.Feed(c.Request().Context(), kid, id)
	return st, petError(id, err)
}

// treat gives the pet of the request's path one of its visitor's treats.
func (h *Pets) treat(c echo.Context) (pets.State, pets.Treats, error) {
	id, err := petID(c)
	if err != nil {
		return pets.State{}, pets.Treats{}, err
	}
	kid, _ := keeper(c)
	st, treats, err := h.Sim.Treat(c.Request().Context(), kid, id)
	return st, treats, petError(id, err)
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
	st, treats, err := h.treat(c)
	if err != nil {
		return refused(err, nil)
	}
	if !isHtmx(c) {
		return c.Redirect(http.StatusSeeOther, back(c, "/pets/"+strconv.FormatInt(st.ID, 10)))
	}
	return fragments(c, h.Views,
		views.Part{Name: views.PartialFlash, Data: views.Flash{Message: views.TreatMessage(st, treats)}},
		views.Part{Name: views.PartialPetTreats, Data: views.TreatsView{Treats: treats, OOB: true}})
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
	j.DiedAt = utcOrNil(s.DiedAt)
	return j
}

// APIList answers GET /api/pets?alive=&q=&limit=&cursor=.
func (h *Pets) APIList(c echo.Context) error {
	return listAPI(c, h.Hub, live.PetsStream, parsePetListQuery, h.list, func(p store.Pet) PetJSON { return petJSON(h.Sim.State(p)) })
}

// list reads one page of the listing.
func (h *Pets) list(ctx context.Context, lq petListQuery) ([]store.Pet, store.Cursor, error) {
	return h.Store.ListPets(ctx, lq.filter)
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
		return err
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
		return badRequest("malformed JSON: " + jsonProblem(err))
	}
	return nil
}

// jsonProblem says what is wrong with a body encoding/json refused, in the
// body's terms rather than Go's (no type names).
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s (at byte %d)", syntax.Error(), syntax.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return "the body must be a JSON object, not " + jsonValueName(typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s must be %s, not %s", typ.Field, jsonKindOf(typ.Type), jsonValueName(typ.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends before its JSON does"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonValueName is an UnmarshalTypeError's Value ("array", "number 1.5"…)
// with an article.
func jsonValueName(v string) string {
	if strings.HasPrefix(v, "array") || strings.HasPrefix(v, "object") {
		return "an " + v
	}
	return "a " + v
}

// jsonKindOf names what a Go type accepts, in JSON's words.
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKindOf(t.Elem())
	}
	return "an object"
}

// APIFeed answers POST /api/pets/{id}/feed with the fed pet: 403 for another
// keeper's pet, 409 for a dead one.
func (h *Pets) APIFeed(c echo.Context) error {
	st, err := h.feed(c)
	if err != nil {
		return err
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
	st, treats, err := h.treat(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, TreatJSON{Pet: petJSON(st), TreatsLeft: treats.Left, RefillAt: utcOrNil(treats.RefillAt)})
}
