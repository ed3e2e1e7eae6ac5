package handlers_test

import (
	"testing"

	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/store/storetest"
)

// pgSuitesTest names the test that runs handler suites on PostgreSQL: every
// testServer set up under it (setupServer) gets a PostgreSQL database.
const pgSuitesTest = "TestHandlerSuitesOnPostgres"

// backendFor is the database of a test's server: PostgreSQL for the suites
// TestHandlerSuitesOnPostgres runs, SQLite for every other test. The suites
// stay plain TestX functions (run once on SQLite by go test, once more on
// PostgreSQL from the table below), not copies.
func backendFor(t testing.TB) storetest.Backend {
	if storetest.Under(t, pgSuitesTest) {
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
var pgSuites = []struct {
	name string
	fn   func(*testing.T)
}{
	// Phone Home: pages, search, cursors, the campaign.
	{"TestPageListsSeedNamesInOrder", TestPageListsSeedNamesInOrder},
	{"TestAPIListsPagesAndFilters", TestAPIListsPagesAndFilters},
	{"TestLiveRowAndCountsReachTheStream", TestLiveRowAndCountsReachTheStream},
	{"TestHealthAndStaticFiles", TestHealthAndStaticFiles},
	{"TestBadInputGetsClearErrors", TestBadInputGetsClearErrors},
	// LivePet: adopt, feed, treat, deaths, search, cursors.
	{"TestPetAPIShapes", TestPetAPIShapes},
	{"TestPetAPIListPagesAndFilters", TestPetAPIListPagesAndFilters},
	{"TestPetAPIErrors", TestPetAPIErrors},
	{"TestFeedOnlyOwnLivingPetDownToZero", TestFeedOnlyOwnLivingPetDownToZero},
	{"TestNamesAreStoredVerbatimAndShownEscaped", TestNamesAreStoredVerbatimAndShownEscaped},
	{"TestAdoptFormReRendersErrorsWithTheValues", TestAdoptFormReRendersErrorsWithTheValues},
	{"TestPetPageIsLiveUntilThePetDies", TestPetPageIsLiveUntilThePetDies},
	{"TestTreatsThroughTheAPIAndTheForms", TestTreatsThroughTheAPIAndTheForms},
	{"TestFeedForm", TestFeedForm},
	{"TestActivePetsListOtherWatchedPets", TestActivePetsListOtherWatchedPets},
	{"TestPetsPageAndItsStream", TestPetsPageAndItsStream},
	// The job engine under the pages: the campaign, the jobs dashboard and
	// its API, cron, the runtime dashboard.
	{"TestPagesEndShowingTheDatabase", TestPagesEndShowingTheDatabase},
	{"TestPhoneHomeEnqueuesOnlyEligibleRowsOnce", TestPhoneHomeEnqueuesOnlyEligibleRowsOnce},
	{"TestPhoneHomeFormAnswersHtmxAndPlainBrowsers", TestPhoneHomeFormAnswersHtmxAndPlainBrowsers},
	{"TestCronPageAndAPI", TestCronPageAndAPI},
	{"TestReadOnlyRefusesEveryAction", TestReadOnlyRefusesEveryAction},
	{"TestDashboardPage", TestDashboardPage},
	{"TestMetricsEndpoint", TestMetricsEndpoint},
	{"TestJobsAPIShapes", TestJobsAPIShapes},
	{"TestJobsAPIListFiltersAndPages", TestJobsAPIListFiltersAndPages},
	{"TestJobsAPIErrorsChangeNothing", TestJobsAPIErrorsChangeNothing},
	{"TestJobsAPIActions", TestJobsAPIActions},
	{"TestJobsAPIBulk", TestJobsAPIBulk},
	{"TestQueuesAPI", TestQueuesAPI},
	{"TestJobsPage", TestJobsPage},
	{"TestJobsPagePagesByCursor", TestJobsPagePagesByCursor},
	{"TestJobFormsActAndReRenderRefusals", TestJobFormsActAndReRenderRefusals},
	{"TestBulkFormActsOnTheSelection", TestBulkFormActsOnTheSelection},
	{"TestQueueFormsPauseResumeAndScale", TestQueueFormsPauseResumeAndScale},
	{"TestJobsStreamCarriesTheRowsOfAPage", TestJobsStreamCarriesTheRowsOfAPage},
	{"TestJobsStreamFollowsTheEngine", TestJobsStreamFollowsTheEngine},
	{"TestJobArgsAreShownAsWrittenAndEscaped", TestJobArgsAreShownAsWrittenAndEscaped},
}

// TestHandlerSuitesOnPostgres runs pgSuites on PostgreSQL (skipped without
// PHONEHOME_TEST_POSTGRES; failed under CI without it).
func TestHandlerSuitesOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.Postgres(t)
	for _, s := range pgSuites {
		t.Run(s.name, s.fn)
	}
}
