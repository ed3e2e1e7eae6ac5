package handlers

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// AnswerHead lets every GET route answer HEAD, as curl -I and uptime
// monitors expect: next (the router) sees a GET, and net/http, which still
// holds the original HEAD request, sends the GET's status and headers and
// drops the body. Handlers that would not end by themselves (the event
// stream) ask IsHead and answer with their headers only. It wraps the
// router from outside because Echo routes by the request it was handed.
func AnswerHead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		get := r.WithContext(context.WithValue(r.Context(), headKey{}, true))
		get.Method = http.MethodGet
		next.ServeHTTP(w, get)
	})
}

type headKey struct{}

// IsHead reports whether the request was a HEAD answered by a GET route.
func IsHead(r *http.Request) bool {
	head, _ := r.Context().Value(headKey{}).(bool)
	return head
}

// HostCheck refuses requests whose Host is not one this server is known by,
// which is what defeats DNS rebinding: a page on evil.example whose name is
// made to resolve to 127.0.0.1 sends "Host: evil.example", and its requests
// would otherwise look same-origin to the browser and to the cross-origin
// check. Accepted: the bound address's host, localhost, any loopback
// literal, the names in allowed, and, when the server listens on every
// interface (0.0.0.0, ::, or no host), any IP literal. Names beyond those
// need -allow-host.
func HostCheck(boundAddr string, allowed []string) echo.MiddlewareFunc {
	ok := map[string]bool{"localhost": true}
	bound, _, _ := net.SplitHostPort(boundAddr)
	anyIP := bound == ""
	if ip := net.ParseIP(bound); ip != nil && ip.IsUnspecified() {
		anyIP = true
	}
	if bound != "" {
		ok[strings.ToLower(bound)] = true
	}
	for _, name := range allowed {
		ok[strings.ToLower(strings.TrimSuffix(name, "."))] = true
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			host := hostName(c.Request().Host)
			if ok[host] {
				return next(c)
			}
			if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || anyIP) {
				return next(c)
			}
			return echo.NewHTTPError(http.StatusForbidden,
				"this phonehome does not answer to the host name "+strconv.Quote(host)+
					": open it by its address or localhost, or start it with -allow-host "+host)
		}
	}
}

// hostName is the lower-case host of a Host header, without port, brackets
// or a trailing dot.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// RedactURI hides the access token in a request URI before it is logged
// (a browser passes it once as ?token=…).
func RedactURI(uri string) string {
	path, query, found := strings.Cut(uri, "?")
	if !found || !strings.Contains(strings.ToLower(query), TokenParam) {
		return uri
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		// Unparseable: redact by hand rather than log it as it is.
		return path + "?[redacted]"
	}
	for k := range q {
		if strings.EqualFold(k, TokenParam) {
			q[k] = []string{"REDACTED"}
		}
	}
	return path + "?" + q.Encode()
}
