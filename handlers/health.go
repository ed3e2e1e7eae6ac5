package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Health answers /healthz.
type Health struct {
	Ping func(ctx context.Context) error
}

// Routes registers GET /healthz.
func (h *Health) Routes(e *echo.Echo) {
	e.GET("/healthz", h.Check)
}

// Check answers 200 "ok" when the database answers, else 503.
func (h *Health) Check(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := h.Ping(ctx); err != nil {
		return c.String(http.StatusServiceUnavailable, "database unavailable: "+err.Error())
	}
	return c.String(http.StatusOK, "ok")
}
