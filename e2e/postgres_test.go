package e2e

import (
	"testing"

	"github.com/phonehome/phonehome/store/storetest"
)

// pgBrowserTest names the test that runs a browser test on PostgreSQL:
// startServer gives every server started under it a PostgreSQL database.
const pgBrowserTest = "TestBrowserOnPostgres"

// databaseFor is the -db of a test's server: a new PostgreSQL database for
// the tests TestBrowserOnPostgres runs, a new SQLite file otherwise.
func databaseFor(t *testing.T) string {
	return storetest.DatabaseFor(t, pgBrowserTest, "phonehome.db")
}

// TestBrowserOnPostgres runs the Phone Home campaign in a browser against a
// server on PostgreSQL: the job engine's claims and wake-ups, the live rows
// and counts over server-sent events, and the table the API reads back, all
// as on SQLite (skipped without PHONEHOME_TEST_POSTGRES; failed under CI
// without it). One browser test only: the others' subject is the page, not
// the database.
func TestBrowserOnPostgres(t *testing.T) {
	storetest.Postgres(t)
	t.Run("TestPhoneHomeLive", TestPhoneHomeLive)
}
