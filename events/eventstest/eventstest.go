// Package eventstest is the event-stream reader the tests share: it reads a
// live text/event-stream response in the background and hands each message
// on, so a test can wait on a channel with a deadline instead of blocking on
// the connection.
package eventstest

import (
	"bufio"
	"io"
	"testing"
	"time"

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

// Until reads msgs until a message satisfies ok and returns it with the
// ones before it. It fails tb when the stream ends or within passes first,
// saying what it waited for and the last message's data.
func Until(tb testing.TB, msgs <-chan events.Message, within time.Duration, what string, ok func(events.Message) bool) (events.Message, []events.Message) {
	tb.Helper()
	var before []events.Message
	deadline := time.After(within)
	for {
		select {
		case m, open := <-msgs:
			if !open {
				tb.Fatalf("%s: the stream ended (last event %.300q)", what, lastData(before))
			}
			if ok(m) {
				return m, before
			}
			before = append(before, m)
		case <-deadline:
			tb.Fatalf("%s: not within %s (last event %.300q)", what, within, lastData(before))
		}
	}
}

func lastData(msgs []events.Message) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[len(msgs)-1].Data
}
