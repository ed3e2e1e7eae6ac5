// Package migrations holds the SQL schema of phonehome as numbered
// golang-migrate files, embedded so the binary migrates itself: one folder
// per database dialect (sqlite/, postgres/), with the same version numbers
// in both so that a schema version means the same tables on either.
package migrations

import (
	"embed"
	"io/fs"
)

// All holds sqlite/ and postgres/, each a set of *.up.sql and *.down.sql
// files applied in order of their number.
//
//go:embed sqlite/*.sql postgres/*.sql
var All embed.FS

// For is one dialect's folder of All ("sqlite" or "postgres") as a tree of
// its own: the files at its root.
func For(dialect string) fs.FS {
	sub, err := fs.Sub(All, dialect)
	if err != nil {
		panic(err) // a constant name: cannot fail
	}
	return sub
}

// FS is SQLite's migrations at the root, as they were before the
// PostgreSQL folder: For("sqlite"), kept for the callers that read a file
// by its bare name.
var FS = For("sqlite")
