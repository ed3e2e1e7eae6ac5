package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// errorsSeeds are errors columns as the engine, the rescue, and other
// writers leave them.
var errorsSeeds = []string{
	`[]`,
	`[ ]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11.123456789Z","error":"no answer","node":"host/12"}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"no answer"},{"attempt":2,"at":"2026-12-05T21:15:12.5Z","error":"again","node":"n"}]`,
	`[{"attempt":3,"at":"2026-12-05T21:15:11.1Z","error":"interrupted: the process running this attempt (h/1) stopped before it finished","node":null}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11+02:00","error":"offset"}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"quote \" inside","node":"n"}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"é ünïcode ☎","node":"n"}]`,
	`[{"at":"2026-12-05T21:15:11Z","attempt":1,"error":"keys in another order"}]`,
	`[ {"attempt": 1, "at": "2026-12-05T21:15:11Z", "error": "spaced"} ]`,
	`[{"attempt":-1,"at":"2026-12-05T21:15:11Z","error":""}]`,
	`[{"attempt":1,"at":"not a time","error":"x"}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"x","extra":1}]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"x"},]`,
	`[{"attempt":1,"at":"2026-12-05T21:15:11Z","error":"x"}`,
	`{}`,
	``,
}

// sameErrors reports whether a and b hold the same errors (times compared
// as instants, as their zones may be different pointers).
func sameErrors(a, b []AttemptError) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Attempt != b[i].Attempt || a[i].Error != b[i].Error || a[i].Node != b[i].Node || !a[i].At.Equal(b[i].At) {
			return false
		}
	}
	return true
}

// FuzzDecodeErrors: decodeErrors agrees with encoding/json on every input:
// the same errors, or an error from both.
func FuzzDecodeErrors(f *testing.F) {
	for _, s := range errorsSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gotErr := decodeErrors(s)
		var want []AttemptError
		wantErr := json.Unmarshal([]byte(s), &want)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, encoding/json's %v", s, gotErr, wantErr)
		}
		if gotErr == nil && !sameErrors(got, want) {
			t.Fatalf("%q: %+v, encoding/json's %+v", s, got, want)
		}
		if gotErr != nil && len(salvageErrors(s)) == 0 && s != "[]" && !strings.HasPrefix(strings.TrimSpace(s), "[") {
			t.Fatalf("%q: salvaged nothing", s)
		}
	})
}

// TestSalvageErrorsKeepsEveryElement: a column the decoder refuses is read
// element by element, nothing dropped.
func TestSalvageErrorsKeepsEveryElement(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want []AttemptError
	}{
		{`"just text"`, []AttemptError{{Error: `"just text"`}}},
		{`{"attempt":1}`, []AttemptError{{Error: `{"attempt":1}`}}},
		{`["x",3,null,{"foo":1}]`, []AttemptError{{Error: "x"}, {Error: "3"}, {Error: "null"}, {Error: `{"foo":1}`}}},
		{`[{"attempt":"one"},{"attempt":2,"at":"2026-01-01T00:00:00Z","error":"e"}]`,
			[]AttemptError{{Error: `{"attempt":"one"}`}, {Attempt: 2, At: at, Error: "e"}}},
	} {
		if got := salvageErrors(c.in); !sameErrors(got, c.want) {
			t.Errorf("salvageErrors(%s) = %+v, want %+v", c.in, got, c.want)
		}
	}
	if got := salvageTags(`["a",1,{"b":2}]`); len(got) != 3 || got[0] != "a" || got[1] != "1" || got[2] != `{"b":2}` {
		t.Errorf("salvageTags = %q", got)
	}
	if got := salvageTags(`"solo"`); len(got) != 1 || got[0] != "solo" {
		t.Errorf("salvageTags of a string = %q", got)
	}
}

// TestDecodeErrorsReadsWhatTheEngineWrites: what the outcome encodes is
// read without encoding/json.
func TestDecodeErrorsReadsWhatTheEngineWrites(t *testing.T) {
	errs := []AttemptError{
		{Attempt: 1, At: time.Date(2026, 12, 5, 21, 15, 11, 123456789, time.UTC), Error: "no answer", Node: "host/12"},
		{Attempt: 2, At: time.Date(2026, 12, 5, 21, 15, 12, 0, time.UTC), Error: "again"},
	}
	b, err := json.Marshal(errs)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := readErrors(string(b))
	if !ok || !sameErrors(got, errs) {
		t.Fatalf("readErrors(%s) = %+v, %v", b, got, ok)
	}
}
