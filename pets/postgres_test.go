package pets_test

import (
	"testing"

	"github.com/phonehome/phonehome/store/storetest"
)

// pgSuitesTest names the test that runs the sim's suites on PostgreSQL:
// every setup under it gets a PostgreSQL database.
const pgSuitesTest = "TestSimOnPostgres"

// databaseFor is the database of a test's sim: a new PostgreSQL database
// for the suites TestSimOnPostgres runs, a new SQLite file otherwise.
func databaseFor(t *testing.T) string {
	return storetest.DatabaseFor(t, pgSuitesTest, "pets.db")
}

// TestSimOnPostgres runs LivePet's suites that write the database on
// PostgreSQL too (skipped without PHONEHOME_TEST_POSTGRES; failed under CI
// without it): ticks, feeding, treats, deaths, the catch-up on deaths at
// start, the active list, and actions racing ticks. The suites stay plain
// TestX functions, listed here, not copied.
func TestSimOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.Postgres(t)
	for _, s := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"TestTicksAgeAndHungerUpToTheCap", TestTicksAgeAndHungerUpToTheCap},
		{"TestFeedTakes100OffDownToZeroForTheKeeperOnly", TestFeedTakes100OffDownToZeroForTheKeeperOnly},
		{"TestFeedIsCommittedBeforeItReturns", TestFeedIsCommittedBeforeItReturns},
		{"TestDeathWhenAgePasses10000", TestDeathWhenAgePasses10000},
		{"TestADuePetIsDeadBeforeTheSweep", TestADuePetIsDeadBeforeTheSweep},
		{"TestRestartCatchesUpOnDeaths", TestRestartCatchesUpOnDeaths},
		{"TestTreats", TestTreats},
		{"TestWatchedPetsAndTheActiveList", TestWatchedPetsAndTheActiveList},
		{"TestActiveListLeavesOutDeadPets", TestActiveListLeavesOutDeadPets},
		{"TestSweepBatchesAndTellsTheListToReload", TestSweepBatchesAndTellsTheListToReload},
		{"TestTickRendersOnlyWatchedPets", TestTickRendersOnlyWatchedPets},
		{"TestTheLoopPublishesChangesAsTheyHappen", TestTheLoopPublishesChangesAsTheyHappen},
		{"TestActionsTicksAndWatchersDoNotRace", TestActionsTicksAndWatchersDoNotRace},
		{"TestADeathIsShownOnce", TestADeathIsShownOnce},
	} {
		t.Run(s.name, s.fn)
	}
}
