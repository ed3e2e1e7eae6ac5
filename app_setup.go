package main

// app_setup.go: what NewApp checks and opens before it builds anything:
// the settings' defaults, the address and TLS it serves with, and the
// database, opened and migrated.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/phonehome/phonehome/store"
)

// minTokenLength keeps tokens from being guessable by hand.
const minTokenLength = 16

// serving checks how the app would serve addr (a token beyond loopback,
// the TLS files) and returns the TLS configuration, nil for plain HTTP.
func serving(addr, token, certFile, keyFile string, logger *slog.Logger) (*tls.Config, error) {
	if err := checkExposure(addr, token); err != nil {
		return nil, err
	}
	tlsConfig, err := loadTLS(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if tlsConfig == nil && !isLoopback(addr) {
		logger.Warn("serving plain HTTP beyond this machine: the access token travels in clear; give -tls-cert and -tls-key to serve HTTPS", "addr", addr)
	}
	return tlsConfig, nil
}

// loadTLS reads the certificate and key for -tls-cert and -tls-key; nil
// when neither is given (plain HTTP).
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s / -tls-key %s: %w (give a PEM certificate and its private key)", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// checkExposure refuses to listen beyond this machine without an access
// token: anybody who can reach the port could otherwise run campaigns and
// read everything.
func checkExposure(addr, token string) error {
	if token != "" && len(token) < minTokenLength {
		return fmt.Errorf("-token: must be at least %d characters (try: openssl rand -hex 16)", minTokenLength)
	}
	if token == "" && !isLoopback(addr) {
		return fmt.Errorf("-addr %s is reachable from other machines: set -token (or PHONEHOME_TOKEN) so only people with it get in, or listen on 127.0.0.1", addr)
	}
	return nil
}

// isLoopback reports whether addr only accepts connections from this
// machine. An empty host listens on every interface, so it is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openMigrated opens the database and brings its schema up to date,
// reporting whether it was new (no schema before).
func openMigrated(ctx context.Context, path string, opts store.Options) (*store.Store, bool, error) {
	st, err := store.OpenWith(ctx, path, opts)
	if err != nil {
		return nil, false, err
	}
	v, _, err := st.SchemaVersion(ctx)
	if err != nil {
		st.Close()
		return nil, false, fmt.Errorf("%s: %w", st.Path, err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, false, err
	}
	return st, v == 0, nil
}

// listenHint is what to do when listening on -addr failed with err: the
// address in use is the usual case (another phonehome), but not the only one.
func listenHint(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "is another phonehome running? choose another -addr"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no network interface of this machine has that address: choose another -addr"
	case errors.Is(err, syscall.EACCES):
		return "ports below 1024 need privileges: choose a port from 1024 up"
	case errors.As(err, &dnsErr):
		return "the host name does not resolve: check it, or give an IP address"
	}
	return "choose another -addr"
}
