package handlers_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/store/storetest"
)

// While the database is away, every page and API answer is a 503 with
// Retry-After and a message that says to try again (never a 500 or a stack
// trace); when it is back, they answer 200 again by themselves, with no
// restart.
func TestDatabaseOutageAnswers503ThenRecovers(t *testing.T) {
	t.Parallel()
	pg := storetest.Postgres(t)
	db := pg.Target(t)
	b := setupServer(t, serverOptions{seed: true, backend: pg, db: db})
	k := (&petBundle{b}).keeper(t)
	created, body := k.do(t, "POST", "/api/pets", `{"name":"Mochi","species":"cat"}`, map[string]string{"Content-Type": "application/json"})
	if created.StatusCode != http.StatusCreated {
		t.Fatalf("adopt: %d %s", created.StatusCode, body)
	}
	paths := []string{"/", "/api/extraterrestrials", "/pets", "/api/pets", "/healthz"}
	get := func(path string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", b.srv.URL+path, nil)
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}
	for _, p := range paths {
		if code, _, body := get(p); code != 200 {
			t.Fatalf("before: GET %s: %d %s", p, code, body)
		}
	}

	restore := storetest.Outage(t, pg.Server, db)
	for _, p := range paths {
		code, retry, body := get(p)
		switch {
		case code != http.StatusServiceUnavailable:
			t.Errorf("during the outage: GET %s: %d, want 503: %.300s", p, code, body)
		case p != "/healthz" && (retry == "" || !strings.Contains(body, "the database is unavailable right now: try again in a moment")):
			t.Errorf("during the outage: GET %s: Retry-After %q, body %.300s", p, retry, body)
		case strings.Contains(body, "goroutine ") || strings.Contains(body, "internal error"):
			t.Errorf("during the outage: GET %s shows a stack or an internal error: %.300s", p, body)
		}
	}

	restore()
	for _, p := range paths {
		waitUntil(t, 30*time.Second, "GET "+p+" to answer 200 again", func() bool {
			code, _, _ := get(p)
			return code == 200
		})
	}
}
