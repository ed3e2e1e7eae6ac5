package appenv_test

import (
	"slices"
	"testing"

	"github.com/phonehome/phonehome/internal/appenv"
)

// A PHONEHOME_ variable is left out; the others stay.
func TestCleanDropsOnlyTheAppsVariables(t *testing.T) {
	t.Setenv("PHONEHOME_TOKEN", "secret")
	t.Setenv("APPENV_TEST_KEEP", "1")
	env := appenv.Clean()
	if slices.Contains(env, "PHONEHOME_TOKEN=secret") {
		t.Error("PHONEHOME_TOKEN kept")
	}
	if !slices.Contains(env, "APPENV_TEST_KEEP=1") {
		t.Error("APPENV_TEST_KEEP dropped")
	}
}
