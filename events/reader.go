// reader.go holds Reader, a text/event-stream parser that reads events as
// EventSource does (the tests of this package and of the app use it).

package events

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Message is one event as a client receives it.
type Message struct {
	ID    string
	Event string // "" for the default "message"
	Data  string // data: lines joined with "\n"
}

// Reader parses a text/event-stream, as EventSource does. Comments (such as
// the heartbeat) are skipped.
type Reader struct {
	sc *bufio.Scanner
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	return &Reader{sc: sc}
}

// Next returns the next event, or the read error (io.EOF at a clean end).
func (r *Reader) Next() (Message, error) {
	var m Message
	var data []string
	hasData := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if hasData {
				m.Data = strings.Join(data, "\n")
				return m, nil
			}
			m = Message{}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			m.ID = value
		case "event":
			m.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		}
	}
	if err := r.sc.Err(); err != nil {
		return Message{}, err
	}
	return Message{}, io.EOF
}

// IDInt is the message id as a number (0 when it is not one).
func (m Message) IDInt() int64 {
	n, _ := strconv.ParseInt(m.ID, 10, 64)
	return n
}
