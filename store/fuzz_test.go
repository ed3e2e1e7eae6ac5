package store_test

// Fuzz tests of the listing cursors, which come back from clients in
// ?cursor=. The seed corpus runs in plain `go test`;
// `go test -fuzz=FuzzX ./store` explores further.

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// fuzzStores are migrated databases, one per backend, with
// extraterrestrials and pets to page through, shared by every input of one
// fuzz target.
func fuzzStores(f *testing.F) []*store.Store {
	f.Helper()
	ctx := context.Background()
	var out []*store.Store
	for _, b := range storetest.Backends(f) {
		st := b.Open(f)
		if _, err := st.SeedExtraterrestrials(ctx); err != nil {
			f.Fatal(err)
		}
		if err := st.GenerateExtraterrestrials(ctx, 200); err != nil {
			f.Fatal(err)
		}
		if err := st.GeneratePets(ctx, 200, store.GeneratePetsOptions{Now: time.Now(), Lifespan: time.Hour}); err != nil {
			f.Fatal(err)
		}
		out = append(out, st)
	}
	return out
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// FuzzParseCursor: any ?cursor= either fails with one line or is a cursor
// that writes back to a string that parses to the same cursor, and that
// both listings (extraterrestrials and pets, plain and searched) accept.
func FuzzParseCursor(f *testing.F) {
	stores := fuzzStores(f)
	for _, s := range []string{
		"", "!!!", "MTpB", encodeCursor("1:Ayala"), encodeCursor("42:"), encodeCursor("0:x"), encodeCursor("-3:x"),
		encodeCursor("99999999999999999999:x"), encodeCursor("7:a:b:c"), encodeCursor("7:' OR 1=1 --"),
		encodeCursor("7:\x00\xff"), encodeCursor("x:7"), encodeCursor(":"), encodeCursor("+5:x"), encodeCursor("0x10:x"),
		base64.URLEncoding.EncodeToString([]byte("1:Ay")), base64.StdEncoding.EncodeToString([]byte("1:?>?")),
		strings.Repeat("A", 4096),
	} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.ParseCursor(s)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseCursor(%q): error %q is not one line", s, msg)
			}
			return
		}
		if s == "" {
			if !c.IsZero() {
				t.Fatalf(`ParseCursor("") = %+v, want the start`, c)
			}
			return
		}
		if c.ID <= 0 {
			t.Fatalf("ParseCursor(%q) = %+v: a cursor with no row id", s, c)
		}
		again, err := store.ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("cursor %+v wrote %q, which reads back as %+v, %v", c, c.String(), again, err)
		}
		for _, st := range stores {
			if _, _, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 5, After: c}); err != nil {
				t.Fatalf("%s: ListExtraterrestrials after %+v: %v", st.Dialect, c, err)
			}
			if _, _, err := st.ListPets(ctx, store.PetFilter{Limit: 5, After: c}); err != nil {
				t.Fatalf("%s: ListPets after %+v: %v", st.Dialect, c, err)
			}
			if _, _, err := st.ListPets(ctx, store.PetFilter{Limit: 5, After: c, Query: "a"}); err != nil {
				t.Fatalf("%s: ListPets (searched) after %+v: %v", st.Dialect, c, err)
			}
		}
	})
}

// FuzzCursorRoundTrip: every cursor a listing can hand out (a row id and
// any name) reads back unchanged, and paging with it continues strictly
// after it: extraterrestrials by (name, id), pets newest first by id.
func FuzzCursorRoundTrip(f *testing.F) {
	stores := fuzzStores(f)
	for _, s := range []struct {
		id   int64
		name string
	}{{1, "Ayala"}, {9223372036854775807, ""}, {5, "a:b"}, {3, "\x00\xff\n"}, {12, "<script>"}, {100, "☃"}} {
		f.Add(s.id, s.name)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, id int64, name string) {
		c := store.Cursor{ID: id, Name: name}
		s := c.String()
		if id <= 0 {
			if s != "" && id != 0 {
				if again, err := store.ParseCursor(s); err == nil {
					t.Fatalf("cursor %+v with a non-positive id wrote %q, which parses as %+v", c, s, again)
				}
			}
			return
		}
		again, err := store.ParseCursor(s)
		if err != nil || again != c {
			t.Fatalf("cursor %+v wrote %q, which reads back as %+v, %v", c, s, again, err)
		}
		for _, st := range stores {
			ets, _, err := st.ListExtraterrestrials(ctx, store.ExtraterrestrialFilter{Limit: 10, After: c})
			if err != nil {
				t.Fatalf("%s: %v", st.Dialect, err)
			}
			for _, et := range ets {
				// SQLite compares TEXT by bytes (BINARY), as Go compares
				// strings, and so does PostgreSQL under "C".
				if et.Name < name || (et.Name == name && et.ID <= id) {
					if utf8.ValidString(name) {
						t.Fatalf("%s: after (%q, %d) the page has (%q, %d)", st.Dialect, name, id, et.Name, et.ID)
					}
				}
			}
			pets, _, err := st.ListPets(ctx, store.PetFilter{Limit: 10, After: c})
			if err != nil {
				t.Fatalf("%s: %v", st.Dialect, err)
			}
			for _, p := range pets {
				if p.ID >= id {
					t.Fatalf("%s: after pet %d the page has pet %d", st.Dialect, id, p.ID)
				}
			}
		}
	})
}
