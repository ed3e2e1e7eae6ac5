// Package migrations holds the SQL schema of phonehome as numbered
// golang-migrate files, embedded so the binary migrates itself.
package migrations

import "embed"

// FS is the set of *.up.sql and *.down.sql files, applied in order of their number.
//
//go:embed *.sql
var FS embed.FS
