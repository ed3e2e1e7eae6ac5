// Package benchhttp is what the benchmarks that drive a running phonehome
// binary over HTTP share: a free address to start it on, and opening one of
// its event streams.
package benchhttp

import (
	"context"
	"fmt"
	"net"
	"net/http"
)

// FreeAddr is a loopback address with a port free right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// OpenStream GETs the event stream at u for as long as ctx lasts and
// returns the response once it is a 200; the caller reads and closes the
// body.
func OpenStream(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return resp, nil
}
