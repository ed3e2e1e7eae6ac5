package handlers_test

// Fuzz tests of the parsers of outside input in the web layer: the
// Last-Event-ID of a reconnecting stream, JSON bodies, forms and listing
// queries, through the real router. Their seed corpus runs in plain
// `go test`; `go test -fuzz=FuzzX ./handlers` explores further.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs/speakandspell"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
)

// fuzzRouter is the real router over a new database (the 10 seed
// extraterrestrials and their calls, engine not started; no pets), shared
// by every input of one fuzz target.
func fuzzRouter(f *testing.F) (http.Handler, *store.Store) {
	f.Helper()
	s := setupServer(f, serverOptions{seed: true, phoneHome: true})
	return s.router, s.st
}

// fuzzServe runs one request through the router in memory.
func fuzzServe(e http.Handler, method, target, contentType string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://phonehome.test/", strings.NewReader(body))
	req.URL = &url.URL{Path: target} // set after: NewRequest would refuse a malformed target
	if p, q, ok := strings.Cut(target, "?"); ok {
		req.URL.Path, req.URL.RawQuery = p, q
	}
	req.RequestURI = target
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// fuzzCheckError says what is wrong with an error answer of the API: it must be
// {"error": "…"}, one line, no server error.
func fuzzCheckError(rec *httptest.ResponseRecorder) string {
	if rec.Code >= 500 {
		return "a server error: " + rec.Body.String()
	}
	var e map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 1 || e["error"] == "" {
		return "not an {\"error\": …} answer: " + rec.Body.String()
	}
	if strings.ContainsAny(e["error"], "\r\n") {
		return "a message of more than one line: " + e["error"]
	}
	return ""
}

// fuzzRefusal fails t unless rec, the answer to what, is a refusal with one
// of the statuses allowed and a one-line {"error"} (fuzzCheckError).
func fuzzRefusal(t *testing.T, what string, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	if !slices.Contains(allowed, rec.Code) {
		t.Fatalf("%s: status %d %.300s", what, rec.Code, rec.Body.String())
	}
	if problem := fuzzCheckError(rec); problem != "" {
		t.Fatalf("%s: %d %s", what, rec.Code, problem)
	}
}

// FuzzLastEventID: any Last-Event-ID header or ?last_event_id= is either a
// non-negative id that reads back the same, or a 400 with one line; the
// header wins over the parameter.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "42", "-1", "+7", "1e3", "0x10", " 12 ", "١٢", "99999999999999999999",
		"9223372036854775807", "9223372036854775808", "12\r\nid: 1", "\x00", "00012"} {
		f.Add(s, "5")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, header, query string) {
		r := httptest.NewRequest("GET", "/events", nil)
		r.URL.RawQuery = url.Values{"last_event_id": {query}}.Encode()
		if header != "" {
			r.Header["Last-Event-Id"] = []string{header}
		}
		id, err := handlers.LastEventID(r)
		raw := header
		if raw == "" {
			raw = query
		}
		if err != nil {
			var he *echo.HTTPError
			if !errors.As(err, &he) || he.Code != http.StatusBadRequest {
				t.Fatalf("handlers.LastEventID(%q, %q): %v, want a 400", header, query, err)
			}
			if msg, _ := he.Message.(string); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("handlers.LastEventID(%q, %q): message %q is not one line", header, query, he.Message)
			}
			if n, perr := strconv.ParseInt(raw, 10, 64); perr == nil && n >= 0 {
				t.Fatalf("lastEventID refused %q, a valid id", raw)
			}
			return
		}
		if id < 0 {
			t.Fatalf("handlers.LastEventID(%q, %q) = %d, negative", header, query, id)
		}
		if raw == "" {
			if id != 0 {
				t.Fatalf("no id given, got %d", id)
			}
			return
		}
		// Round trip: the id written back reads the same.
		r2 := httptest.NewRequest("GET", "/events", nil)
		r2.Header.Set("Last-Event-ID", strconv.FormatInt(id, 10))
		if again, err := handlers.LastEventID(r2); err != nil || again != id {
			t.Fatalf("id %d read back as %d, %v", id, again, err)
		}
	})
}

// FuzzAdoptJSON posts any body with any content type to POST /api/pets:
// the answer is 201 with the trimmed name stored, or 400/413/415/422 with
// a one-line {"error"}; never a server error.
func FuzzAdoptJSON(f *testing.F) {
	e, st := fuzzRouter(f)
	for _, s := range []struct{ ctype, body string }{
		{"application/json", `{"name":"Rex","species":"cat"}`},
		{"application/json; charset=utf-8", `{"name":"  Spaced  ","species":"owl"}`},
		{"application/json", `{"name":"<script>alert(1)</script>","species":"fox"}`},
		{"application/json", `{"name":"Rex\r\nevent: x","species":"cat"}`},
		{"application/json", `{"name":"ab","species":"cat"}`},
		{"application/json", `{"name":"Rex","species":"dragon"}`},
		{"application/json", `{"name":"Rex","species":"cat","extra":1}`},
		{"application/json", `{"name":7}`},
		{"application/json", `{`},
		{"application/json", ``},
		{"application/json", `null`},
		{"application/json", `[[[[[[[[[[]]]]]]]]]]`},
		{"application/json", "{\"name\":\"\xff\xfe\xfd\xfc\",\"species\":\"cat\"}"},
		{"application/json", `{"name":"Rex","species":"cat"}{"name":"Rex","species":"cat"}`},
		{"application/x-www-form-urlencoded", "name=Rex&species=cat"},
		{"text/plain", `{"name":"Rex","species":"cat"}`},
		{"", `{"name":"Rex","species":"cat"}`},
		{"application/json;;", `{}`},
	} {
		f.Add(s.ctype, s.body)
	}
	f.Fuzz(func(t *testing.T, ctype, body string) {
		rec := fuzzServe(e, "POST", "/api/pets", ctype, body)
		switch rec.Code {
		case http.StatusCreated:
			var p handlers.PetJSON
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("201 with %q: %v", rec.Body.String(), err)
			}
			var in struct{ Name, Species string }
			if err := json.Unmarshal([]byte(body), &in); err != nil {
				t.Fatalf("201 for a body that is not JSON: %q", body)
			}
			if want, _ := pets.ValidName(in.Name); p.Name != want {
				t.Fatalf("adopted as %q, sent %q", p.Name, in.Name)
			}
			stored, err := st.GetPet(context.Background(), p.ID)
			if err != nil || stored.Name != p.Name {
				t.Fatalf("pet %d stored as %q (%v), answered %q", p.ID, stored.Name, err, p.Name)
			}
		default:
			fuzzRefusal(t, fmt.Sprintf("POST /api/pets %q %q", ctype, body), rec,
				http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
		}
	})
}

// FuzzAdoptForm posts any form body to POST /pets: a redirect to the new
// pet, or the form again with a message (422), or 400/413; never a server
// error.
func FuzzAdoptForm(f *testing.F) {
	e, _ := fuzzRouter(f)
	for _, s := range []string{
		"name=Rex&species=cat", "name=%3Cscript%3E&species=fox", "name=ab&species=cat", "name=Rex%0d%0a&species=cat",
		"name=%zz&species=cat", "name=%FF%FE%FD&species=cat", "species=dragon&name=Rexy", "", "&&&==", "name=" + strings.Repeat("a", 101) + "&species=cat",
		"name=Rex&name=Other&species=cat&species=dog",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := fuzzServe(e, "POST", "/pets", "application/x-www-form-urlencoded", body)
		switch rec.Code {
		case http.StatusSeeOther:
			if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/pets/") {
				t.Fatalf("redirect to %q", loc)
			}
		case http.StatusUnprocessableEntity, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if !strings.Contains(rec.Body.String(), "<html") {
				t.Fatalf("%d without a page: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("POST /pets %q: status %d %s", body, rec.Code, rec.Body.String())
		}
	})
}

// FuzzListQuery sends any query string to the listings of the API: 200 with
// items, or 400/422 with a one-line {"error"}; never a server error.
func FuzzListQuery(f *testing.F) {
	e, st := fuzzRouter(f)
	for _, q := range []string{
		"", "limit=5", "limit=abc", "limit=0", "limit=1001", "limit=99999999999999999999", "status=none", "status=home",
		"q=%25_%5C", "q=%27%20OR%201%3D1--", "cursor=MTpBeWFsYQ", "cursor=!!!", "alive=true", "alive=maybe",
		"q=" + strings.Repeat("x", 101), "%zz=1", "q=%00%0d%0a", "cursor=" + strings.Repeat("A", 5000),
	} {
		f.Add("/api/extraterrestrials", q)
		f.Add("/api/pets", q)
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		if path != "/api/pets" {
			path = "/api/extraterrestrials"
		}
		rec := fuzzServe(e, "GET", path+"?"+query, "", "")
		if n := st.Reader.Stats().InUse; n != 0 {
			t.Fatalf("GET %s?%s left %d read connections in use", path, query, n)
		}
		switch rec.Code {
		case http.StatusOK:
			var out struct {
				Items      []json.RawMessage `json:"items"`
				NextCursor *string           `json:"next_cursor"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Items == nil {
				t.Fatalf("GET %s?%s: 200 with %q", path, query, rec.Body.String())
			}
			if out.NextCursor != nil {
				if _, err := store.ParseCursor(*out.NextCursor); err != nil {
					t.Fatalf("next_cursor %q does not parse: %v", *out.NextCursor, err)
				}
			}
		default:
			fuzzRefusal(t, fmt.Sprintf("GET %s?%s", path, query), rec, http.StatusBadRequest, http.StatusUnprocessableEntity)
		}
	})
}

// FuzzJobsAPI sends any query to the job listings and any body to the bulk
// action and the queue scale: 200, or 400/404/409/413/415/422 with a
// one-line {"error"} (a page for /jobs); never a server error.
func FuzzJobsAPI(f *testing.F) {
	e, _ := fuzzRouter(f)
	for _, s := range []struct {
		route uint8
		ctype string
		input string
	}{
		{0, "", "state=available&limit=5"}, {0, "", "state=done"}, {0, "", "queue=phone_calls&kind=speak_and_spell"},
		{0, "", "cursor=!!!"}, {0, "", "limit=0"}, {0, "", "state=available,completed&limit=1000"}, {0, "", "kind=%00"},
		{1, "application/json", `{"action":"cancel","ids":[1,2]}`}, {1, "application/json", `{"action":"explode","ids":[1]}`},
		{1, "application/json", `{"action":"delete","ids":[]}`}, {1, "application/json", `{"action":"retry","ids":[-1]}`},
		{1, "application/json", `{"action":"retry","ids":[1e3]}`}, {1, "text/plain", `{}`}, {1, "application/json", `{`},
		{2, "application/json", `{"limit":5}`}, {2, "application/json", `{"limit":0}`}, {2, "application/json", `{}`},
		{2, "application/json", `{"limit":"5"}`}, {2, "application/json", `{"limit":99999999999}`}, {2, "application/x-www-form-urlencoded", "limit=5"},
		{3, "", "state=retryable"}, {3, "", "queue=" + strings.Repeat("q", 101)}, {3, "", "limit=abc"},
	} {
		f.Add(s.route, s.ctype, s.input)
	}
	f.Fuzz(func(t *testing.T, route uint8, ctype, input string) {
		var rec *httptest.ResponseRecorder
		var what string
		switch route % 4 {
		case 0:
			what = "GET /api/jobs?" + input
			rec = fuzzServe(e, "GET", "/api/jobs?"+input, "", "")
		case 1:
			what = "POST /api/jobs/bulk " + input
			rec = fuzzServe(e, "POST", "/api/jobs/bulk", ctype, input)
		case 2:
			what = "POST /api/queues/phone_calls/scale " + input
			rec = fuzzServe(e, "POST", "/api/queues/"+speakandspell.Queue+"/scale", ctype, input)
		case 3:
			what = "GET /jobs?" + input
			rec = fuzzServe(e, "GET", "/jobs?"+input, "", "")
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity:
				if !strings.Contains(rec.Body.String(), "<html") {
					t.Fatalf("%s: %d without a page", what, rec.Code)
				}
			default:
				t.Fatalf("%s: status %d %.300s", what, rec.Code, rec.Body.String())
			}
			return
		}
		switch rec.Code {
		case http.StatusOK:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s: 200 with %.300q", what, rec.Body.String())
			}
		default:
			fuzzRefusal(t, what, rec, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict,
				http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
		}
	})
}

// FuzzStreamIDs: any ?ids= of the event stream is absent (every event), a
// list of positive ids, at most events.MaxKeys, that writes back to the same
// list, or a 400/422 with one line.
func FuzzStreamIDs(f *testing.F) {
	for _, s := range []string{"", "1", "1,2,3", "0", "-1", "1,,2", "abc", " 1", "1 ", "+1", "99999999999999999999",
		"9223372036854775807", "1,1,1", strings.Repeat("7,", 1000) + "7", "\x00", "١"} {
		f.Add(true, s)
	}
	f.Add(false, "")
	f.Fuzz(func(t *testing.T, given bool, raw string) {
		r := httptest.NewRequest("GET", "/events", nil)
		if given {
			r.URL.RawQuery = url.Values{"stream": {"jobs"}, "ids": {raw}}.Encode()
		}
		ids, err := handlers.ParseIDs(r)
		if err != nil {
			var he *echo.HTTPError
			if !errors.As(err, &he) || (he.Code != http.StatusBadRequest && he.Code != http.StatusUnprocessableEntity) {
				t.Fatalf("handlers.ParseIDs(%q): %v, want a 400 or 422", raw, err)
			}
			if msg, _ := he.Message.(string); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("handlers.ParseIDs(%q): message %q is not one line", raw, he.Message)
			}
			return
		}
		if !given {
			if ids != nil {
				t.Fatalf("no ids= gave %v, want nil (every event)", ids)
			}
			return
		}
		if ids == nil || len(ids) > events.MaxKeys {
			t.Fatalf("handlers.ParseIDs(%q) = %v", raw, ids)
		}
		parts := make([]string, len(ids))
		for i, id := range ids {
			if id <= 0 {
				t.Fatalf("handlers.ParseIDs(%q) has id %d", raw, id)
			}
			parts[i] = strconv.FormatInt(id, 10)
		}
		r2 := httptest.NewRequest("GET", "/events", nil)
		r2.URL.RawQuery = url.Values{"ids": {strings.Join(parts, ",")}}.Encode()
		again, err := handlers.ParseIDs(r2)
		if err != nil || len(again) != len(ids) {
			t.Fatalf("ids %v read back as %v, %v", ids, again, err)
		}
		for i := range ids {
			if again[i] != ids[i] {
				t.Fatalf("ids %v read back as %v", ids, again)
			}
		}
	})
}
