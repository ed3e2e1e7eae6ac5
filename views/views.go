// Package views renders phonehome's HTML: a base layout, one template per
// page, and the partials (rows, counts, icons) that both the pages and the
// live event stream use, so each thing has exactly one definition of how it
// looks. Templates are embedded and parsed once, at start-up.
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

	"github.com/phonehome/phonehome/store"
)

//go:embed layout.html pages/*.html partials/*.html
var files embed.FS

// Views holds the parsed templates.
type Views struct {
	base  *template.Template
	pages map[string]*template.Template
}

// New parses every template. A template that does not parse, or a page that
// a handler names but that does not exist, is a start-up error, not a
// runtime one.
func New() (*Views, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(files, "layout.html", "partials/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	pageFiles, err := fs.Glob(files, "pages/*.html")
	if err != nil {
		return nil, err
	}
	v := &Views{base: base, pages: map[string]*template.Template{}}
	for _, f := range pageFiles {
		t, err := template.Must(base.Clone()).ParseFS(files, f)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		v.pages[strings.TrimSuffix(path.Base(f), ".html")] = t
	}
	return v, nil
}

// Page renders a whole page into a buffer, so a template error can still
// become an error response instead of half a page.
func (v *Views) Page(name string, data any) ([]byte, error) {
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
func (v *Views) Fragment(name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := v.base.ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// Row is the data of the et_row partial.
type Row struct {
	ET store.Extraterrestrial
	// OOB marks the row for an out-of-band swap (live events).
	OOB bool
}

// Counts is the data of the et_counts partial.
type Counts struct {
	C   store.StatusCounts
	OOB bool
}

// ExtraterrestrialRow renders the row of one extraterrestrial for the live
// stream: the same partial as the page, marked for an out-of-band swap.
func (v *Views) ExtraterrestrialRow(et store.Extraterrestrial) ([]byte, error) {
	return v.Fragment("et_row", Row{ET: et, OOB: true})
}

// CampaignCounts renders the campaign header for the live stream.
func (v *Views) CampaignCounts(c store.StatusCounts) ([]byte, error) {
	return v.Fragment("et_counts", Counts{C: c, OOB: true})
}

var funcs = template.FuncMap{
	"row":    func(et store.Extraterrestrial, oob bool) Row { return Row{ET: et, OOB: oob} },
	"counts": func(c store.StatusCounts, oob bool) Counts { return Counts{C: c, OOB: oob} },
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
}

// HumanTime formats a time for people: "22 Nov 2026, 04:15:03 UTC".
func HumanTime(t time.Time) string {
	return t.UTC().Format("2 Jan 2006, 15:04:05 MST")
}

// Thousands formats n with thin separators: 1234567 → "1,234,567".
func Thousands(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
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
