// Package setting holds what every part's configuration does with a value
// left out: one rule for all of them, so that 0 means "the default" the
// same way in the hub, the engine, the broker and the rest.
package setting

// Number is a setting's type: a count, a size or a duration.
type Number interface {
	~int | ~int32 | ~int64 | ~float64
}

// Default sets *v to def when *v is not positive: a setting left out (or
// one that could only mean "never", which no part supports) takes the
// part's default.
func Default[T Number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
