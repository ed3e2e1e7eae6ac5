package eventstest_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/phonehome/phonehome/events"
	"github.com/phonehome/phonehome/events/eventstest"
)

// closer records that the stream's body was closed.
type closer struct {
	io.Reader
	closed chan struct{}
}

func (c closer) Close() error { close(c.closed); return nil }

// Every event of the stream arrives in order, then the body is closed and
// the channel with it.
func TestMessagesInOrderThenClosed(t *testing.T) {
	body := closer{strings.NewReader("id: 1\ndata: one\n\nid: 2\nevent: x\ndata: two\n\n"), make(chan struct{})}
	msgs := eventstest.Messages(body, 1)
	for _, want := range []struct{ id, event, data string }{{"1", "", "one"}, {"2", "x", "two"}} {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("channel closed before event %s", want.id)
			}
			if m.ID != want.id || m.Event != want.event || m.Data != want.data {
				t.Errorf("got %+v, want %+v", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %s never came", want.id)
		}
	}
	select {
	case m, ok := <-msgs:
		if ok {
			t.Fatalf("got %+v after the stream ended", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed at the end of the stream")
	}
	select {
	case <-body.closed:
	default:
		t.Error("body not closed")
	}
}

// Until hands back the first message that satisfies ok, with the ones
// before it.
func TestUntilReturnsTheMatchAndWhatCameBefore(t *testing.T) {
	msgs := make(chan events.Message, 3)
	for _, d := range []string{"a", "b", "c"} {
		msgs <- events.Message{Data: d}
	}
	m, before := eventstest.Until(t, msgs, time.Second, "c", func(m events.Message) bool { return m.Data == "c" })
	if m.Data != "c" || len(before) != 2 || before[0].Data != "a" || before[1].Data != "b" {
		t.Errorf("got %+v after %+v", m, before)
	}
}
