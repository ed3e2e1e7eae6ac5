// Package migrations holds the SQL schema of phonehome as numbered
// golang-migrate files, embedded so the binary migrates itself: one folder
// per database dialect (sqlite/, postgres/), with the same version numbers
// in both so that a schema version means the same tables on either.
package migrations

import "embed"

// FS holds sqlite/ and postgres/, each a set of *.up.sql and *.down.sql
// files applied in order of their number.
//
//go:embed sqlite/*.sql postgres/*.sql
var FS embed.FS
