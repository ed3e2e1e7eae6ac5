// Package handlers is phonehome's web layer: the Echo router with its
// middleware, one handler struct per area with its Routes (pages, forms,
// their binding, the JSON API), and the one error path with its error
// table (errors.go). How things look is package views; what is pushed to
// open pages is package live.
package handlers

import (
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/static"
	"github.com/phonehome/phonehome/views"
)

// contentSecurityPolicy allows only our own files: no inline script or
// style, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// Router is the set of areas the server routes to.
type Router interface {
	Routes(e *echo.Echo)
}

// NewServer builds the Echo router with phonehome's middleware and the
// routes of every area.
func NewServer(logger *slog.Logger, v *views.Views, version string, areas ...Router) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	// Only the direct peer's address: X-Forwarded-For from anyone is not trusted.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = ErrorHandler(logger, v, version)

	e.Use(middleware.RequestID())
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURI: true, LogMethod: true, LogLatency: true, LogRequestID: true, LogError: true,
		LogRemoteIP: true, HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelDebug
			if v.Status >= 500 {
				level = slog.LevelError
			}
			method := v.Method
			if IsHead(c.Request()) {
				method = http.MethodHead
			}
			logger.LogAttrs(c.Request().Context(), level, "request",
				slog.String("method", method), slog.String("uri", RedactURI(v.URI)), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.String("request_id", v.RequestID),
				slog.String("remote_ip", v.RemoteIP))
			return nil
		},
	}))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableErrorHandler: false}))
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		ContentSecurityPolicy: contentSecurityPolicy,
		ReferrerPolicy:        "same-origin",
	}))
	e.Use(middleware.BodyLimit("1M"))
	e.Use(refuseCrossOrigin())

	e.GET("/static/*", serveStatic(staticFiles()))
	for _, a := range areas {
		a.Routes(e)
	}
	return e
}

// refuseCrossOrigin refuses cross-site browser requests that change things
// (POST, PUT, DELETE…) by their Sec-Fetch-Site or Origin header, with net/
// http's CrossOriginProtection, and lets same-origin pages and non-browser
// clients such as curl through. A refusal goes through the one error path:
// JSON on the API, the error page elsewhere.
func refuseCrossOrigin() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := cop.Check(c.Request()); err != nil {
				return echo.NewHTTPError(http.StatusForbidden,
					"cross-site request refused: this action can only be taken from phonehome's own pages")
			}
			return next(c)
		}
	}
}

// serveStatic serves our CSS, scripts and images; a missing file gets the
// app's own 404 page.
func serveStatic(files http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("*")
		if name == "" || strings.HasSuffix(name, "/") || name == "embed.go" || !fs.ValidPath(name) {
			return echo.NewHTTPError(http.StatusNotFound, "no such file: /static/"+name)
		}
		if _, err := fs.Stat(static.FS, name); err != nil {
			return echo.NewHTTPError(http.StatusNotFound, "no such file: /static/"+name)
		}
		http.StripPrefix("/static/", files).ServeHTTP(c.Response(), c.Request())
		return nil
	}
}

func staticFiles() http.Handler {
	fs := http.FileServerFS(static.FS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "embed.go" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fs.ServeHTTP(w, r)
	})
}

// wantsJSON reports whether errors for this request are answered as JSON:
// the API, and the event stream (read by curl and EventSource).
func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/events"
}

// hub is what the handlers need of the event hub: serving streams, and the
// id of the last event a page reflects.
type hub interface {
	Serve(w http.ResponseWriter, r *http.Request, stream string, after int64) error
	// ServeKeys serves only the events about keys (and those about no key).
	ServeKeys(w http.ResponseWriter, r *http.Request, stream string, after int64, keys []int64) error
	// StreamLastID is the id of the stream's last event: a page of that
	// stream passes it back to resume. Per stream, because a shared
	// stream's ids are the same on every node (package broker) and are
	// not the hub's time-based ones.
	StreamLastID(stream string) int64
	Has(stream string) bool
}

var _ hub = (*events.Hub)(nil)
