package jobs

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeErrors decodes a job's errors column. A claim decodes it for every
// job it takes, and W2 (jobs that fail and are claimed again) spent a tenth
// of its recorder's time in encoding/json doing so; the arrays the engine
// writes are one shape (AttemptError's encoding, or the rescue's
// json_object with the same keys in the same order), which readErrors
// reads directly. Anything else (an escaped character, another layout)
// goes to encoding/json, so the result is the same either way.
func decodeErrors(s string) ([]AttemptError, error) {
	if s == "[]" {
		return []AttemptError{}, nil
	}
	if out, ok := readErrors(s); ok {
		return out, nil
	}
	var out []AttemptError
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

// readErrors reads s when it is a compact array of objects with the keys
// attempt, at, error and, optionally, node (a string or null), in that
// order, is valid UTF-8 and holds no backslash (so no string has an
// escape); ok is false otherwise.
func readErrors(s string) (out []AttemptError, ok bool) {
	if strings.IndexByte(s, '\\') >= 0 || !utf8.ValidString(s) || len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	r := errReader{s: s[1 : len(s)-1]}
	out = make([]AttemptError, 0, strings.Count(s, `{"attempt":`))
	for {
		var e AttemptError
		if !r.lit(`{"attempt":`) {
			return nil, false
		}
		n, ok := r.int()
		if !ok || !r.lit(`,"at":`) {
			return nil, false
		}
		at, ok := r.str()
		if !ok || !r.lit(`,"error":`) {
			return nil, false
		}
		if e.Error, ok = r.str(); !ok {
			return nil, false
		}
		if r.lit(`,"node":`) {
			if !r.lit("null") {
				if e.Node, ok = r.str(); !ok {
					return nil, false
				}
			}
		}
		if !r.lit("}") {
			return nil, false
		}
		// UnmarshalText is as strict as encoding/json's decoding of a time.
		if err := e.At.UnmarshalText([]byte(at)); err != nil {
			return nil, false
		}
		e.Attempt = n
		out = append(out, e)
		if r.s == "" {
			return out, true
		}
		if !r.lit(",") {
			return nil, false
		}
	}
}

// errReader consumes the text of an errors array from the front.
type errReader struct{ s string }

// lit consumes p when the text starts with it.
func (r *errReader) lit(p string) bool {
	if !strings.HasPrefix(r.s, p) {
		return false
	}
	r.s = r.s[len(p):]
	return true
}

// int consumes a decimal integer.
func (r *errReader) int() (int, bool) {
	i := 0
	for i < len(r.s) && (r.s[i] >= '0' && r.s[i] <= '9' || i == 0 && r.s[i] == '-') {
		i++
	}
	digits := strings.TrimPrefix(r.s[:i], "-")
	if len(digits) > 1 && digits[0] == '0' { // JSON has no leading zeros
		return 0, false
	}
	n, err := strconv.Atoi(r.s[:i])
	if err != nil {
		return 0, false
	}
	r.s = r.s[i:]
	return n, true
}

// str consumes a string without escapes (readErrors has checked there are
// none) and returns its content.
func (r *errReader) str() (string, bool) {
	if !strings.HasPrefix(r.s, `"`) {
		return "", false
	}
	end := strings.IndexByte(r.s[1:], '"')
	if end < 0 {
		return "", false
	}
	v := r.s[1 : 1+end]
	for i := range len(v) {
		if v[i] < 0x20 { // JSON escapes control characters
			return "", false
		}
	}
	r.s = r.s[2+end:]
	return v, true
}

// salvageErrors reads an errors column that decodeErrors cannot: valid
// JSON (both databases see to that) but not an array of attempt errors,
// as a hand-written UPDATE or another tool may leave it. One such row must
// not stop its queue's claims or the dashboard's pages, so nothing is
// refused and nothing dropped: an element that reads as an attempt error
// is one, a string is an error with its text, anything else an error
// holding its JSON; a column that is no array is one error holding it.
func salvageErrors(s string) []AttemptError {
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(s), &elems); err != nil {
		return []AttemptError{{Error: s}}
	}
	out := make([]AttemptError, 0, len(elems))
	for _, el := range elems {
		var e AttemptError
		if json.Unmarshal(el, &e) != nil || el[0] != '{' || (e.Attempt == 0 && e.At.IsZero() && e.Error == "") {
			e = AttemptError{Error: jsonText(el)}
		}
		out = append(out, e)
	}
	return out
}

// salvageTags reads a tags column that is not an array of strings, in the
// way of salvageErrors: each element is a tag (a string its text, anything
// else its JSON); a column that is no array is one tag.
func salvageTags(s string) []string {
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(s), &elems); err != nil {
		return []string{jsonText([]byte(s))}
	}
	out := make([]string, 0, len(elems))
	for _, el := range elems {
		out = append(out, jsonText(el))
	}
	return out
}

// jsonText is a JSON value as text: a string's own text, any other value's
// JSON.
func jsonText(v []byte) string {
	var str string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &str) == nil {
		return str
	}
	return string(v)
}
