package views

import "time"

// Extraterrestrial is one extraterrestrial as the Phone Home page shows it.
type Extraterrestrial struct {
	ID   int64
	Name string
	// CommunicationStatus is phoning_home, space_taxi_on_the_way, no_answer,
	// or "" when it never tried.
	CommunicationStatus  string
	CommunicationAttempt int
	// LastAttemptAt is the zero time when it never tried.
	LastAttemptAt time.Time
}

// StatusCounts is how many extraterrestrials are in each status.
type StatusCounts struct {
	Never, PhoningHome, SpaceTaxi, NoAnswer int
}

// Total is the number of extraterrestrials.
func (c StatusCounts) Total() int { return c.Never + c.PhoningHome + c.SpaceTaxi + c.NoAnswer }

// ExtraterrestrialsPage is the data of the extraterrestrials page.
type ExtraterrestrialsPage struct {
	Layout
	Rows   []Extraterrestrial
	Counts StatusCounts
	// LastEventID is the id of the last event the page reflects: the live
	// stream resumes after it.
	LastEventID int64
	// StreamURL is the live stream of just the rows shown (and the counts).
	StreamURL    string
	Query        string
	StatusFilter string
	RowsURL      string
	NextURL      string
	AnswerRate   float64
	MaxAttempts  int
	Flash        *Flash
}

// Row is the data of the et_row partial.
type Row struct {
	ET Extraterrestrial
	// OOB marks the row for an out-of-band swap (live events).
	OOB bool
}

// Counts is the data of the et_counts partial.
type Counts struct {
	C   StatusCounts
	OOB bool
}

// PhoneHomeMessage is the flash of a Phone Home that enqueued n calls.
func PhoneHomeMessage(n int) string {
	switch n {
	case 0:
		return "Nobody left to call: everyone is phoning home already or has a space taxi on the way."
	case 1:
		return "Phoning home: 1 call enqueued."
	}
	return "Phoning home: " + Thousands(n) + " calls enqueued."
}
