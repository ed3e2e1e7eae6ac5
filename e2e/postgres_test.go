package e2e

import (
	"testing"

	"github.com/phonehome/phonehome/store/storetest"
)

// TestBrowserOnPostgres runs the Phone Home campaign in a browser against a
// server on PostgreSQL: the job engine's claims and wake-ups, the live rows
// and counts over server-sent events, and the table the API reads back, all
// as on SQLite (skipped without PHONEHOME_TEST_POSTGRES; failed under CI
// without it). One browser test only: the others' subject is the page, not
// the database.
func TestBrowserOnPostgres(t *testing.T) {
	storetest.RunSuites(t, TestPhoneHomeLive)
}
