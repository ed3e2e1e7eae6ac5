package pets_test

import (
	"testing"

	"github.com/phonehome/phonehome/store/storetest"
)

// TestSimOnPostgres runs LivePet's suites that write the database on
// PostgreSQL too (skipped without PHONEHOME_TEST_POSTGRES; failed under CI
// without it): ticks, feeding, treats, deaths, the catch-up on deaths at
// start, the active list, and actions racing ticks. The suites stay plain
// TestX functions, listed here, not copied.
func TestSimOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.RunSuites(t,
		TestTicksAgeAndHungerUpToTheCap,
		TestFeedTakes100OffDownToZeroForTheKeeperOnly,
		TestFeedIsCommittedBeforeItReturns,
		TestDeathWhenAgePasses10000,
		TestADuePetIsDeadBeforeTheSweep,
		TestRestartCatchesUpOnDeaths,
		TestTreats,
		TestWatchedPetsAndTheActiveList,
		TestActiveListLeavesOutDeadPets,
		TestSweepBatchesAndTellsTheListToReload,
		TestTickRendersOnlyWatchedPets,
		TestTheLoopPublishesChangesAsTheyHappen,
		TestActionsTicksAndWatchersDoNotRace,
		TestADeathIsShownOnce,
	)
}
