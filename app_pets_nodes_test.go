package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store/storetest"
)

// Two servers as NewApp wires them, on one PostgreSQL database: a viewer of
// a pet on each makes both pages say "2 watching" (the presence block of
// app.go), and a server that shuts down takes its viewer with it at once
// (its presence rows go at Stop).
func TestLivePetViewersCountOnEveryServer(t *testing.T) {
	t.Parallel()
	db := storetest.Postgres(t).Target(t)
	a := startApp(t, Config{DB: db})
	b := startApp(t, Config{DB: db})

	resp, err := http.Post(a.URL+"/api/pets", "application/json", strings.NewReader(`{"name":"Pip","species":"cat"}`))
	if err != nil {
		t.Fatal(err)
	}
	var pet struct {
		ID int64 `json:"id"`
	}
	err = json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&pet)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("adopt: %d %v", resp.StatusCode, err)
	}
	stream := pets.Stream(pet.ID)
	watching := func(n int) string { return fmt.Sprintf(`<span class="stat-n">%d</span> watching`, n) }
	read := func(app *testApp) <-chan events.Message {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return eventstest.Messages(app.openStream(t, ctx, stream).Body, 1<<16)
	}
	onA, onB := read(a), read(b)
	untilEvent(t, onA, 10*time.Second, "A's page: 2 watching", watching(2))
	untilEvent(t, onB, 10*time.Second, "B's page: 2 watching", watching(2))

	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	untilEvent(t, onA, 10*time.Second, "A's page: 1 watching once B stopped", watching(1))
}
