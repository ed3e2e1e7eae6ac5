package live

import (
	"fmt"
	"time"
)

// StreamClients are whole-stream clients of several servers (the many-node
// benchmark's, issue 14), read in this process by one poller: raw sockets
// on epoll, as the other scenarios' clients, so a thousand of them cost
// this process one thread.
type StreamClients struct {
	p     *poller
	conns []*conn
}

// RowEvent is one row event a client received: which client (its number,
// from 0), the event's id, the row's id and attempt, and when it arrived.
type RowEvent struct {
	Client  int
	ID      int64
	Row     int64
	Attempt int
	At      time.Time
}

// DialStreams connects clients clients to path on the servers listening on
// 127.0.0.1 at ports, spread over them in turn (client i on ports[i mod
// len(ports)]), and calls onRow for every row event each receives. A
// client whose stream the server ends (a slow client is cut) reconnects at
// once to the same server with Last-Event-ID, as a browser does. onRow
// runs on the poller's one thread and must be quick.
func DialStreams(ports []int, clients int, path string, onRow func(RowEvent)) (*StreamClients, error) {
	if _, err := raiseFiles(uint64(clients + 1024)); err != nil {
		return nil, err
	}
	p, err := newPoller(func(ev *event) {
		if ev.name == "" {
			onRow(RowEvent{Client: ev.c.index, ID: ev.id, Row: ev.row, Attempt: ev.try, At: ev.at})
		}
	})
	if err != nil {
		return nil, err
	}
	p.resume = true
	s := &StreamClients{p: p}
	for i := range clients {
		c, err := p.dial(ports[i%len(ports)], path, i)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		s.conns = append(s.conns, c)
	}
	return s, nil
}

// Stats are what the clients received: row events, named events that
// were "resync", and how many times a stream was cut by the server (each
// client resumes at once from its last id, as EventSource does; a stream
// that could not be resumed counts too).
func (s *StreamClients) Stats() (rows, resyncs int64, cut int) {
	for _, c := range s.conns {
		rows += c.rows.Load()
		resyncs += c.resync.Load()
		cut += int(c.cuts.Load())
		if c.ended.Load() {
			cut++
		}
	}
	return rows, resyncs, cut
}

// CPU is the poller thread's CPU time, once closed: the clients' share of
// this process.
func (s *StreamClients) CPU() time.Duration { return s.p.cpu }

// Close closes every connection and stops the poller.
func (s *StreamClients) Close() { s.p.close() }
