package handlers

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// TokenCookie keeps a browser's access token once it has opened a page with
// ?token=….
const TokenCookie = "phonehome_token"

// TokenParam is the query parameter a browser passes the token in once.
const TokenParam = "token"

// RequireToken refuses every request that does not carry token: as
// "Authorization: Bearer <token>" (curl, scripts), or in the TokenCookie. A
// GET with ?token=<token> sets the cookie and redirects to the same address
// without it, so the token does not linger in the address bar or in
// history. /healthz and /static/ stay open: they reveal nothing. Tokens are
// compared in constant time.
func RequireToken(token string) echo.MiddlewareFunc {
	want := []byte(token)
	matches := func(got string) bool {
		return got != "" && subtle.ConstantTimeCompare([]byte(got), want) == 1
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/static/") {
				return next(c)
			}
			if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && matches(bearer) {
				return next(c)
			}
			if ck, err := r.Cookie(TokenCookie); err == nil && matches(ck.Value) {
				return next(c)
			}
			if q := r.URL.Query(); q.Has(TokenParam) && r.Method == http.MethodGet {
				if !matches(q.Get(TokenParam)) {
					return echo.NewHTTPError(http.StatusUnauthorized, "wrong access token")
				}
				c.SetCookie(&http.Cookie{
					Name: TokenCookie, Value: token, Path: "/", HttpOnly: true,
					SameSite: http.SameSiteStrictMode, Secure: c.IsTLS(),
					MaxAge: int((30 * 24 * time.Hour).Seconds()),
				})
				q.Del(TokenParam)
				clean := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
				return c.Redirect(http.StatusSeeOther, clean.String())
			}
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="phonehome"`)
			return echo.NewHTTPError(http.StatusUnauthorized,
				"this phonehome needs its access token: send \"Authorization: Bearer <token>\", or open a page once with ?token=<token>")
		}
	}
}
