package handlers

// The parsers the fuzz tests (package handlers_test) call directly.
var (
	LastEventID = lastEventID
	ParseIDs    = parseIDs
)
