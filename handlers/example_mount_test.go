package handlers_test

import (
	"context"
	"log"
	"net/http"

	"github.com/phonehome/phonehome/handlers"
	"github.com/phonehome/phonehome/jobs"
	"github.com/phonehome/phonehome/store"
)

// Mounting the jobs dashboard in another Go program, under /admin/jobs,
// over that program's own engine (TestMountedJobsDashboard runs this).
func ExampleNewJobsDashboard() {
	ctx := context.Background()
	st, err := store.Open(ctx, "host.db")
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil { // the jobs tables
		log.Fatal(err)
	}
	engine, err := jobs.New(st.Writer, jobs.Config{Queues: map[string]int{"default": 10}, Reader: st.Reader})
	if err != nil {
		log.Fatal(err)
	}
	dash, err := handlers.NewJobsDashboard(handlers.JobsDashboardConfig{
		Engine: engine, Reader: st.Reader, Prefix: "/admin/jobs", ReadOnly: false,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer dash.Close()
	if err := engine.Start(ctx); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/jobs", dash)  // the job list
	mux.Handle("/admin/jobs/", dash) // everything under it
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", mux))
}
