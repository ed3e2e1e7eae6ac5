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
