// Package appenv is the environment a test or benchmark gives the phonehome
// binary it starts: this process's, without PHONEHOME_* variables. Every
// flag the app is not given reads one, so a variable left in the shell (a
// token, a poll interval) must not change what is tested or measured.
package appenv

import (
	"os"
	"slices"
	"strings"
)

// Prefix starts the name of every variable the app reads.
const Prefix = "PHONEHOME_"

// Clean is os.Environ() without the variables whose names start with Prefix.
func Clean() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, Prefix) })
}
