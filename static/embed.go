// Package static holds the files served under /static/: our stylesheet and
// script, and the vendored htmx and htmx-ext-sse (with their licences), so
// the binary needs no network and no CDN.
package static

import "embed"

// FS is the content of this folder, served as /static/….
//
//go:embed *.css *.js *.svg vendor
var FS embed.FS
