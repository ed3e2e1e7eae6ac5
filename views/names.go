package views

// Page names a page template: pages/NAME.html, drawn inside the layout.
type Page string

// Partial names a partial template: {{define "NAME"}} in partials/.
type Partial string

// The pages the app renders.
const (
	PageExtraterrestrials Page = "extraterrestrials"
	PageJobs              Page = "jobs"
	PageJob               Page = "job"
	PagePets              Page = "pets"
	PagePet               Page = "pet"
	PageNewPet            Page = "pets_new"
	PageDashboard         Page = "dashboard"
	PageCron              Page = "cron"
	PageError             Page = "error"
)

// The partials the app renders on their own: htmx answers and live events.
const (
	PartialFlash Partial = "flash"

	PartialETRow    Partial = "et_row"
	PartialETRows   Partial = "et_rows"
	PartialETCounts Partial = "et_counts"

	PartialJobRow              Partial = "job_row"
	PartialJobRowDeleted       Partial = "job_row_deleted"
	PartialJobCounts           Partial = "job_counts"
	PartialJobQueues           Partial = "job_queues"
	PartialJobThroughput       Partial = "job_throughput"
	PartialJobLive             Partial = "job_live"
	PartialJobPanel            Partial = "job_panel"
	PartialJobDeleteConfirm    Partial = "job_delete_confirm"
	PartialJobDeleteConfirmOne Partial = "job_delete_confirm_one"
	PartialCronTable           Partial = "cron_table"

	PartialPetStats   Partial = "pet_stats"
	PartialPetMain    Partial = "pet_main"
	PartialPetActive  Partial = "pet_active"
	PartialPetAdopted Partial = "pet_adopted"
	PartialPetRow     Partial = "pet_row"
	PartialPetRows    Partial = "pet_rows"
	PartialPetCounts  Partial = "pet_counts"
	PartialPetTreats  Partial = "pet_treats"

	PartialDashLive Partial = "dash_live"
)

// allPages and allPartials list every name above: New fails when one of
// them has no template, so a misspelt name stops the server at start.
var (
	allPages = []Page{PageExtraterrestrials, PageJobs, PageJob, PagePets, PagePet, PageNewPet, PageDashboard, PageCron, PageError}

	allPartials = []Partial{PartialFlash, PartialETRow, PartialETRows, PartialETCounts,
		PartialJobRow, PartialJobRowDeleted, PartialJobCounts, PartialJobQueues, PartialJobThroughput, PartialJobLive, PartialJobPanel, PartialJobDeleteConfirm, PartialJobDeleteConfirmOne, PartialCronTable,
		PartialPetStats, PartialPetMain, PartialPetActive, PartialPetAdopted, PartialPetRow, PartialPetRows, PartialPetCounts, PartialPetTreats,
		PartialDashLive}
)
