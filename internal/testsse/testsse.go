// Package testsse is the event-stream reader the tests share: it reads a
// live text/event-stream response in the background and hands each message
// on, so a test can wait on a channel with a deadline instead of blocking on
// the connection.
package testsse

import (
	"bufio"
	"io"

	"github.com/phonehome/phonehome/events"
)

// Messages reads the events of body in the background and delivers them on
// a channel with room for buffer messages. When the stream ends (an error,
// or the test cancelling the request) the body is closed and then the
// channel. A reader that falls more than buffer messages behind holds the
// stream up, as a slow browser would.
func Messages(body io.ReadCloser, buffer int) <-chan events.Message {
	out := make(chan events.Message, buffer)
	go func() {
		defer close(out)
		defer body.Close()
		r := events.NewReader(bufio.NewReader(body))
		for {
			m, err := r.Next()
			if err != nil {
				return
			}
			out <- m
		}
	}()
	return out
}
