package handlers_test

import (
	"testing"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// backendFor is the database of a test's server: PostgreSQL for the suites
// TestHandlerSuitesOnPostgres runs, SQLite for every other test. The suites
// stay plain TestX functions (run once on SQLite by go test, once more on
// PostgreSQL from the table below), not copies.
func backendFor(t testing.TB) storetest.Backend {
	if storetest.InSuites(t) {
		return storetest.Postgres(t)
	}
	return storetest.Backend{Dialect: store.SQLite}
}

// pgSuites are the handler suites that run on PostgreSQL too: every page
// and API that reads or writes the database through a dialect-specific
// path. Left out, because their subject is not the database: the dashboard's
// SQLite file figures, cross-site refusals, stream-id checks, fuzzing, and
// mounting. Chosen to keep CI's time in bounds (each suite costs a
// database of its own).
var pgSuites = []func(*testing.T){
	// Phone Home: pages, search, cursors, the campaign.
	TestPageListsSeedNamesInOrder,
	TestAPIListsPagesAndFilters,
	TestLiveRowAndCountsReachTheStream,
	TestHealthAndStaticFiles,
	TestBadInputGetsClearErrors,
	// LivePet: adopt, feed, treat, deaths, search, cursors.
	TestPetAPIShapes,
	TestPetAPIListPagesAndFilters,
	TestPetAPIErrors,
	TestFeedOnlyOwnLivingPetDownToZero,
	TestNamesAreStoredVerbatimAndShownEscaped,
	TestAdoptFormReRendersErrorsWithTheValues,
	TestPetPageIsLiveUntilThePetDies,
	TestTreatsThroughTheAPIAndTheForms,
	TestFeedForm,
	TestActivePetsListOtherWatchedPets,
	TestPetsPageAndItsStream,
	// The job engine under the pages: the campaign, the jobs dashboard and
	// its API, cron, the runtime dashboard.
	TestPagesEndShowingTheDatabase,
	TestPhoneHomeEnqueuesOnlyEligibleRowsOnce,
	TestPhoneHomeFormAnswersHtmxAndPlainBrowsers,
	TestCronPageAndAPI,
	TestReadOnlyRefusesEveryAction,
	TestDashboardPage,
	TestMetricsEndpoint,
	TestJobsAPIShapes,
	TestJobsAPIListFiltersAndPages,
	TestJobsAPIErrorsChangeNothing,
	TestJobsAPIActions,
	TestJobsAPIBulk,
	TestQueuesAPI,
	TestJobsPage,
	TestJobsPagePagesByCursor,
	TestJobFormsActAndReRenderRefusals,
	TestBulkFormActsOnTheSelection,
	TestQueueFormsPauseResumeAndScale,
	TestJobsStreamCarriesTheRowsOfAPage,
	TestJobsStreamFollowsTheEngine,
	TestJobArgsAreShownAsWrittenAndEscaped,
}

// TestHandlerSuitesOnPostgres runs pgSuites on PostgreSQL (skipped without
// PHONEHOME_TEST_POSTGRES; failed under CI without it).
func TestHandlerSuitesOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunSuites(t, pgSuites...)
}
