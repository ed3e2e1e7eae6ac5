package main

// Hostile names: stored verbatim, shown escaped in every page and event.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/jobs"
)

// hostileNames are extraterrestrial names made to break out of HTML, SQL and
// event-stream lines. The pages and events must show them escaped.
var hostileNames = []string{
	`<script>alert("et")</script>`,
	`"Double" & 'Single' quotes`,
	`Robert'); DROP TABLE extraterrestrials;--`,
	"Line one\r\nevent: resync\r\ndata: <b>injected</b>\r\n\r\nid: 1",
	"Bare\rcarriage return",
	"Bare\nline feed\n\n: comment",
	`</td></tr><tr id="extraterrestrial-1"><td>`,
	"\u202eesrever 😀 ☃",
}

// hostilePetNames are pet names that are valid (no control characters,
// no direction controls, which pets.ValidName refuses): adopted through
// the API, they must be stored verbatim.
var hostilePetNames = []string{
	`<script>alert('pet')</script>`,
	`"Rex" & 'Fido'`,
	`x'); DROP TABLE pets;--`,
	`</div><img src=x onerror=alert(1)>`,
	"שלום 😀 right-to-left",
}

// TestHostileNamesStoredVerbatimShownEscaped stores names full of markup,
// quotes, SQL and line breaks, and reads them back everywhere: verbatim
// from the API and the file, escaped in pages and in the event stream,
// whose lines they cannot break out of.
func TestHostileNamesStoredVerbatimShownEscaped(t *testing.T) {
	app := startApp(t, Config{Backoff: jobs.FixedBackoff(0), AnswerRate: 1, PetTick: time.Hour})
	ctx := context.Background()
	ids := map[int64]string{}
	for _, name := range hostileNames {
		var id int64
		if err := app.store.Writer.Get(&id, app.store.Rebind("INSERT INTO extraterrestrials (name) VALUES (?) RETURNING id"), name); err != nil {
			t.Fatal(err)
		}
		ids[id] = name
	}

	// The stream, read raw and as events.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp := app.openStream(t, sctx, "extraterrestrials")
	defer resp.Body.Close()
	var raw bytes.Buffer
	reader := events.NewReader(io.TeeReader(resp.Body, &raw))
	if status, body := faultCall(t, faultClient, "POST", app.URL+"/api/phone-home", "", ""); status != 200 {
		t.Fatalf("phone home: %d %s", status, body)
	}
	seen := map[int64]bool{}
	deadline := time.AfterFunc(30*time.Second, cancel)
	defer deadline.Stop()
	for len(seen) < len(ids) {
		m, err := reader.Next()
		if err != nil {
			t.Fatalf("stream ended with %d of %d hostile rows seen: %v", len(seen), len(ids), err)
		}
		switch m.Event {
		case "":
		case "counts":
			continue
		default:
			t.Errorf("an event %q on the stream (data %.200q): a name broke out of its data lines", m.Event, m.Data)
			continue
		}
		var id int64
		if _, err := fmt.Sscanf(m.Data, `<tr id="extraterrestrial-%d"`, &id); err != nil {
			t.Errorf("an event that is not a row: %.200q", m.Data)
			continue
		}
		name, hostile := ids[id]
		if !hostile {
			continue
		}
		seen[id] = true
		// CR LF and CR become LF on the stream; the rest is HTML-escaped.
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(escapeHTML(name))
		if !strings.Contains(m.Data, want) {
			t.Errorf("row %d: the event does not carry the escaped name %q: %.400q", id, want, m.Data)
		}
		checkNoRawMarkup(t, fmt.Sprintf("event of row %d", id), m.Data)
	}
	cancel()
	for i, line := range strings.Split(raw.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "data:") || strings.HasPrefix(line, "id:") ||
			strings.HasPrefix(line, "event:") || strings.HasPrefix(line, ":") || strings.HasPrefix(line, "retry:") {
			continue
		}
		t.Errorf("stream line %d is none of data:, id:, event:, comment: %.200q", i+1, line)
	}
	if strings.Contains(raw.String(), "\r") {
		t.Error("a carriage return reached the stream")
	}

	// Pages escape; the API and the file keep the names verbatim.
	status, page := faultCall(t, faultClient, "GET", app.URL+"/?limit=1000", "", "")
	if status != 200 {
		t.Fatalf("GET /: %d", status)
	}
	for id, name := range ids {
		if !strings.Contains(page, escapeHTML(name)) {
			t.Errorf("the page does not show %q escaped", name)
		}
		var stored string
		if err := app.store.Reader.Get(&stored, app.store.Rebind("SELECT name FROM extraterrestrials WHERE id = ?"), id); err != nil || stored != name {
			t.Errorf("extraterrestrial %d stored as %q (%v), want %q", id, stored, err, name)
		}
	}
	checkNoRawMarkup(t, "the extraterrestrials page", page)
	status, body := faultCall(t, faultClient, "GET", app.URL+"/api/extraterrestrials?limit=1000", "", "")
	var list struct {
		Items []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("API: %d %.200q", status, body)
	}
	for _, it := range list.Items {
		if name, ok := ids[it.ID]; ok && it.Name != name {
			t.Errorf("API: extraterrestrial %d is %q, want %q verbatim", it.ID, it.Name, name)
		}
	}

	// Pets: adopted through the API while the pets stream is read.
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	presp := app.openStream(t, pctx, "pets")
	defer presp.Body.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	pets := map[int64]string{}
	for _, name := range hostilePetNames {
		body, _ := json.Marshal(map[string]string{"name": name, "species": "owl"})
		status, answer := faultCall(t, client, "POST", app.URL+"/api/pets", "application/json", string(body))
		var p struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		}
		if status != 201 || json.Unmarshal([]byte(answer), &p) != nil || p.Name != name {
			t.Fatalf("adopt %q: %d %.200q", name, status, answer)
		}
		pets[p.ID] = name
	}
	preader := events.NewReader(bufio.NewReader(presp.Body))
	adopted := 0
	for adopted < len(pets) {
		m, err := preader.Next()
		if err != nil {
			t.Fatalf("pets stream ended after %d of %d adoptions: %v", adopted, len(pets), err)
		}
		if m.Event != "adopted" {
			continue
		}
		adopted++
		checkNoRawMarkup(t, "adopted event", m.Data)
		found := false
		for _, name := range pets {
			found = found || strings.Contains(m.Data, escapeHTML(name))
		}
		if !found {
			t.Errorf("adopted event shows none of the names escaped: %.400q", m.Data)
		}
	}
	for id, name := range pets {
		status, page := faultCall(t, client, "GET", fmt.Sprintf("%s/pets/%d", app.URL, id), "", "")
		if status != 200 || !strings.Contains(page, escapeHTML(name)) {
			t.Errorf("pet %d page (%d) does not show %q escaped", id, status, name)
		}
		checkNoRawMarkup(t, fmt.Sprintf("pet %d page", id), page)
		var stored string
		if err := app.store.Reader.Get(&stored, app.store.Rebind("SELECT name FROM pets WHERE id = ?"), id); err != nil || stored != name {
			t.Errorf("pet %d stored as %q (%v), want %q", id, stored, err, name)
		}
	}
	_, listPage := faultCall(t, client, "GET", app.URL+"/pets", "", "")
	checkNoRawMarkup(t, "the pets page", listPage)
	if n := len(pets) + len(ids); n > 0 {
		t.Logf("%d hostile names stored verbatim and shown escaped in pages, the API and %d stream events", n, len(seen)+adopted)
	}
}

// escapeHTML is how html/template writes text: the five special characters
// as entities.
func escapeHTML(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;", `'`, "&#39;", "\x00", "\uFFFD").Replace(s)
}

// checkNoRawMarkup fails when the markup of a hostile name appears
// unescaped.
func checkNoRawMarkup(t *testing.T, where, s string) {
	t.Helper()
	for _, bad := range []string{`<script>alert`, `<b>injected`, `<img src=x`, `</td></tr><tr id="extraterrestrial-1"><td>`, `</div><img`} {
		if strings.Contains(s, bad) {
			t.Errorf("%s contains %q unescaped", where, bad)
		}
	}
}
