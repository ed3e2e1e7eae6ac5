// Package views is how phonehome looks: the embedded templates (a base
// layout, one template per page, and the partials that both the pages and
// the live event stream use, so each thing has exactly one definition of
// how it looks), the data each of them is filled with, the formatters and
// the charts. Templates are parsed once, at start-up, and every name the
// app renders (see names.go) is checked then.
package views

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
	"time"
)

//go:embed layout.html pages/*.html partials/*.html
var files embed.FS

// Views holds the parsed templates.
type Views struct {
	base  *template.Template
	pages map[Page]*template.Template
	opts  Options
}

// Options are what differs between servers drawing the same pages: where
// the jobs dashboard is mounted, and whether it may change anything.
type Options struct {
	// Mount, when set, is the path prefix the jobs dashboard is served
	// under by another program (handlers.NewJobsDashboard), such as
	// "/admin/jobs": its pages are Mount, Mount/{id}, Mount/cron, its API
	// Mount/api/…, its files Mount/static/… and its stream Mount/events,
	// and the app's other pages are not linked. Empty: the app's own
	// layout (/jobs, /api, /static, /events).
	Mount string
	// JobsReadOnly draws the jobs dashboard without its actions (cancel,
	// retry, delete, selection, queue and cron controls) and says so.
	JobsReadOnly bool
	// Database names the database in the footer ("PostgreSQL"); empty
	// means SQLite, the default.
	Database string
}

// JobsURL is the address of the jobs dashboard's page at suffix: "" is the
// list, "/42" a job, "/cron" the cron page, "?state=x" a filter.
func (o Options) JobsURL(suffix string) string {
	root := "/jobs"
	if o.Mount != "" {
		root = o.Mount
	}
	return root + suffix
}

// StaticURL is the address of a static file, by its name under static/.
func (o Options) StaticURL(name string) string { return o.Mount + "/static/" + name }

// EventsURL is the address of the event stream endpoint.
func (o Options) EventsURL() string { return o.Mount + "/events" }

// New parses every template for the app's own layout (see NewWith).
func New() (*Views, error) { return NewWith(Options{}) }

// NewWith parses every template and checks that every page and partial the
// app renders (the names in names.go) exists: a template that does not
// parse, or a name without a template, is a start-up error, not a runtime
// one. The options are bound into the templates' functions (jobsURL,
// staticURL, mounted, readOnly), so every fragment drawn by these Views,
// by a page or by a live feed, carries them.
func NewWith(o Options) (*Views, error) {
	fm := template.FuncMap{
		"jobsURL":   o.JobsURL,
		"staticURL": o.StaticURL,
		"mounted":   func() bool { return o.Mount != "" },
		"readOnly":  func() bool { return o.JobsReadOnly },
		"database": func() string {
			if o.Database == "" {
				return "SQLite"
			}
			return o.Database
		},
	}
	base, err := template.New("base").Funcs(funcs).Funcs(fm).ParseFS(files, "layout.html", "partials/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	pageFiles, err := fs.Glob(files, "pages/*.html")
	if err != nil {
		return nil, err
	}
	v := &Views{base: base, pages: map[Page]*template.Template{}, opts: o}
	for _, f := range pageFiles {
		t, err := template.Must(base.Clone()).ParseFS(files, f)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		v.pages[Page(strings.TrimSuffix(path.Base(f), ".html"))] = t
	}
	for _, p := range allPages {
		if v.pages[p] == nil {
			return nil, fmt.Errorf("no template for page %q (pages/%s.html)", p, p)
		}
	}
	for _, p := range allPartials {
		if base.Lookup(string(p)) == nil {
			return nil, fmt.Errorf("no template for partial %q ({{define %q}} in partials/)", p, p)
		}
	}
	return v, nil
}

// Options are the options these Views were made with.
func (v *Views) Options() Options { return v.opts }

// Page renders a whole page into a buffer, so a template error can still
// become an error response instead of half a page.
func (v *Views) Page(name Page, data any) ([]byte, error) {
	t := v.pages[name]
	if t == nil {
		return nil, fmt.Errorf("no page template %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return nil, fmt.Errorf("render page %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Fragment renders one partial, for htmx responses and live events.
func (v *Views) Fragment(name Partial, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := v.base.ExecuteTemplate(&buf, string(name), data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Part is one partial with its data, for a response made of several.
type Part struct {
	Name Partial
	Data any
}

// Fragments renders parts one after the other into one body.
func (v *Views) Fragments(parts ...Part) ([]byte, error) {
	var out []byte
	for _, p := range parts {
		html, err := v.Fragment(p.Name, p.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, html...)
	}
	return out, nil
}

var funcs = template.FuncMap{
	"row":    func(et Extraterrestrial, oob bool) Row { return Row{ET: et, OOB: oob} },
	"counts": func(c StatusCounts, oob bool) Counts { return Counts{C: c, OOB: oob} },
	"rfc3339": func(t time.Time) string {
		return t.UTC().Format(time.RFC3339)
	},
	"humanTime": HumanTime,
	"thousands": Thousands,
	"percent": func(f float64) string {
		return fmt.Sprintf("%.0f%%", f*100)
	},
	// per1000 is n's share of total in thousandths, for SVG bar widths.
	"per1000": func(n, total int) int {
		if total <= 0 {
			return 0
		}
		return n * 1000 / total
	},
	"add": func(a, b int) int { return a + b },
	// liveTable is the data of the live_table partial (partials/list.html).
	"liveTable": func(class, id string, page any) liveTable { return liveTable{Class: class, ID: id, Page: page} },
}

// liveTable is the data of the live_table partial: the table's class, its
// body's id, and the page's own data, whose RowsURL and NextURL it links
// and which draws the rows.
type liveTable struct {
	Class, ID string
	Page      any
}

// Layout is what the base layout needs from every page's data.
type Layout struct {
	// Nav names the current section, to highlight its link.
	Nav string
	// Version is shown in the footer.
	Version string
}

// ErrorPage is the data of the error page.
type ErrorPage struct {
	Layout
	Status     int
	StatusText string
	Message    string
}

// Flash is a one-line message above a page's table or panel.
type Flash struct {
	Message string
	Error   bool
}
