package jobs

// telemetry_shared.go: on PostgreSQL, where several nodes work one job
// table, each engine writes its telemetry of the current minute (the
// attempts it finished in each second, and the wait and run histograms of
// each queue and kind) to job_telemetry once a second, and reads the other
// nodes' rows. Throughput and Timings add those to its own, so the jobs
// dashboard's charts count every node's attempts, whichever node draws
// them. On SQLite there is one process, and they come from its memory.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ShareTelemetryEvery is how often an engine on PostgreSQL writes its
// minute of telemetry and reads the other nodes': the charts of one node
// show another's attempts about this late.
const ShareTelemetryEvery = time.Second

// minuteTelemetry is one node's minute as job_telemetry stores it.
type minuteTelemetry struct {
	// Seconds are {second of the minute, completed, failed}, for the
	// seconds with attempts.
	Seconds [][3]int             `json:"s,omitempty"`
	Queues  map[string]*wireSlot `json:"q,omitempty"`
	Kinds   map[string]*wireSlot `json:"k,omitempty"`
}

// wireSlot is a timingSlot as stored: the histograms' non-empty buckets
// as {bucket, count}.
type wireSlot struct {
	Count  int         `json:"n"`
	Failed int         `json:"f,omitempty"`
	Wait   [][2]uint32 `json:"w"`
	Run    [][2]uint32 `json:"r"`
}

func sparse(h *histogram) [][2]uint32 {
	var out [][2]uint32
	for i, c := range h {
		if c > 0 {
			out = append(out, [2]uint32{uint32(i), c})
		}
	}
	return out
}

// addTo adds w's attempts to sl.
func (w *wireSlot) addTo(sl *timingSlot) {
	sl.count += w.Count
	sl.failed += w.Failed
	for _, b := range w.Wait {
		if int(b[0]) < histBuckets {
			sl.wait[b[0]] += b[1]
		}
	}
	for _, b := range w.Run {
		if int(b[0]) < histBuckets {
			sl.run[b[0]] += b[1]
		}
	}
}

// sharedTelemetry is what the other nodes wrote, as this engine last read
// it, and what it wrote itself.
type sharedTelemetry struct {
	mu sync.Mutex
	// others holds each other node's minutes (node → minute →
	// telemetry), and under this node's name what an earlier process with
	// the same name wrote (carried).
	others map[string]map[int64]*minuteTelemetry
	// since is the minute this engine started sharing.
	since int64
	// carried are the minutes from since on that an earlier process with
	// this node's name had written when this one started: each write of
	// such a minute adds them, so the row keeps both processes' attempts.
	carried map[int64]*minuteTelemetry
	// written is the payload last written for each recent minute of its
	// own, so an unchanged minute is not written again.
	written map[int64]string
	// read is whether the whole window has been read once.
	read bool
	// pruned is the minute the table was last pruned.
	pruned int64
}

// telemetryLoop shares the engine's telemetry until Stop (PostgreSQL).
func (e *Engine) telemetryLoop() {
	e.throughput.shared.mu.Lock()
	e.throughput.shared.since = e.now().Unix() / 60
	e.throughput.shared.mu.Unlock()
	e.every(ShareTelemetryEvery, step{"share job telemetry", e.shareTelemetry})
}

// Statements of shareTelemetry (PostgreSQL only).
const (
	upsertTelemetrySQL = `INSERT INTO job_telemetry (node, minute, payload) VALUES ($1, $2, $3)
		ON CONFLICT (node, minute) DO UPDATE SET payload = excluded.payload`
	readTelemetrySQL  = `SELECT node, minute, payload FROM job_telemetry WHERE minute >= $1`
	pruneTelemetrySQL = `DELETE FROM job_telemetry WHERE minute < $1`
)

// shareTelemetry reads every row of the window the first time (before it
// writes anything, so that an earlier process's minute under this node's
// name is carried, not overwritten), writes this node's current and
// previous minute (the previous one's last attempts may have finished
// after its last write) when they changed, reads the rows the other nodes
// may have changed since, and once a minute deletes the rows older than
// the window.
func (e *Engine) shareTelemetry(ctx context.Context) error {
	s := &e.throughput.shared
	now := e.now().Unix() / 60
	s.mu.Lock()
	first := !s.read
	s.mu.Unlock()
	if first {
		if err := e.readTelemetry(ctx, now-TimingsWindow, now); err != nil {
			return err
		}
	}
	for _, minute := range []int64{now - 1, now} {
		payload, err := e.minutePayload(minute)
		if err != nil {
			return err
		}
		s.mu.Lock()
		same := payload == "" || s.written[minute] == payload
		s.mu.Unlock()
		if same {
			continue
		}
		if _, err := e.db.ExecContext(ctx, upsertTelemetrySQL, e.cfg.Node, minute, payload); err != nil {
			return fmt.Errorf("write job telemetry: %w", err)
		}
		s.mu.Lock()
		if s.written == nil {
			s.written = map[int64]string{}
		}
		s.written[minute] = payload
		for m := range s.written {
			if m < now-1 {
				delete(s.written, m)
			}
		}
		s.mu.Unlock()
	}

	if !first { // (the first read, above, had every minute)
		if err := e.readTelemetry(ctx, now-2, now); err != nil { // the minutes others may still be writing
			return err
		}
	}
	s.mu.Lock()
	prune := s.pruned != now
	s.pruned = now
	s.mu.Unlock()
	if prune {
		if _, err := e.db.ExecContext(ctx, pruneTelemetrySQL, now-TimingsWindow); err != nil {
			return fmt.Errorf("prune job telemetry: %w", err)
		}
	}
	return nil
}

// readTelemetry reads the rows of the minutes from `from` on into others;
// the first time, this node's own rows from since on are carried.
func (e *Engine) readTelemetry(ctx context.Context, from, now int64) error {
	s := &e.throughput.shared
	var rows []struct {
		Node    string `db:"node"`
		Minute  int64  `db:"minute"`
		Payload string `db:"payload"`
	}
	if err := e.reader.SelectContext(ctx, &rows, readTelemetrySQL, from); err != nil {
		return fmt.Errorf("read job telemetry: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.read
	s.read = true
	if s.others == nil {
		s.others = map[string]map[int64]*minuteTelemetry{}
	}
	for _, r := range rows {
		own := r.Node == e.cfg.Node && r.Minute >= s.since
		if own && !first {
			continue // this engine's memory, and what it carried
		}
		var t minuteTelemetry
		if err := json.Unmarshal([]byte(r.Payload), &t); err != nil {
			e.log.Warn("job telemetry of another node unreadable", "node", r.Node, "minute", r.Minute, "err", err)
			continue
		}
		if s.others[r.Node] == nil {
			s.others[r.Node] = map[int64]*minuteTelemetry{}
		}
		s.others[r.Node][r.Minute] = &t
		if own {
			if s.carried == nil {
				s.carried = map[int64]*minuteTelemetry{}
			}
			s.carried[r.Minute] = &t
		}
	}
	for node, minutes := range s.others {
		for m := range minutes {
			if m <= now-TimingsWindow {
				delete(minutes, m)
			}
		}
		if len(minutes) == 0 {
			delete(s.others, node)
		}
	}
	for m := range s.carried {
		if m < now-1 {
			delete(s.carried, m)
		}
	}
	return nil
}

// minutePayload is this engine's telemetry of minute as JSON, "" when it
// finished no attempt in it.
func (e *Engine) minutePayload(minute int64) (string, error) {
	var t minuteTelemetry
	r := &e.throughput
	r.mu.Lock()
	for i := range int64(60) {
		sec := minute*60 + i
		if completed, failed := r.second(sec); completed > 0 || failed > 0 {
			t.Seconds = append(t.Seconds, [3]int{int(i), completed, failed})
		}
	}
	r.mu.Unlock()
	tm := &r.timings
	tm.mu.Lock()
	export := func(m map[string]*timingSeries) map[string]*wireSlot {
		var out map[string]*wireSlot
		for name, series := range m {
			sl := series.at(minute)
			if sl == nil || sl.count == 0 {
				continue
			}
			if out == nil {
				out = map[string]*wireSlot{}
			}
			out[name] = &wireSlot{Count: sl.count, Failed: sl.failed, Wait: sparse(&sl.wait), Run: sparse(&sl.run)}
		}
		return out
	}
	t.Queues, t.Kinds = export(tm.queues), export(tm.kinds)
	tm.mu.Unlock()
	r.shared.mu.Lock()
	if c := r.shared.carried[minute]; c != nil {
		t.add(c)
	}
	r.shared.mu.Unlock()
	if len(t.Seconds) == 0 && t.Queues == nil && t.Kinds == nil {
		return "", nil
	}
	b, err := json.Marshal(t)
	return string(b), err
}

// add adds o's attempts to t.
func (t *minuteTelemetry) add(o *minuteTelemetry) {
	var secs [60][2]int
	for _, list := range [][][3]int{t.Seconds, o.Seconds} {
		for _, s := range list {
			if s[0] >= 0 && s[0] < 60 {
				secs[s[0]][0] += s[1]
				secs[s[0]][1] += s[2]
			}
		}
	}
	t.Seconds = t.Seconds[:0]
	for i, s := range secs {
		if s[0] > 0 || s[1] > 0 {
			t.Seconds = append(t.Seconds, [3]int{i, s[0], s[1]})
		}
	}
	merge := func(into *map[string]*wireSlot, from map[string]*wireSlot) {
		for name, w := range from {
			var sl timingSlot
			if cur := (*into)[name]; cur != nil {
				cur.addTo(&sl)
			}
			w.addTo(&sl)
			if *into == nil {
				*into = map[string]*wireSlot{}
			}
			(*into)[name] = &wireSlot{Count: sl.count, Failed: sl.failed, Wait: sparse(&sl.wait), Run: sparse(&sl.run)}
		}
	}
	merge(&t.Queues, o.Queues)
	merge(&t.Kinds, o.Kinds)
}

// addThroughput adds the other nodes' attempts of the seconds of out
// (one point a second, oldest first) to it.
func (s *sharedTelemetry) addThroughput(out []ThroughputPoint) {
	if len(out) == 0 {
		return
	}
	first := out[0].At.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, minutes := range s.others {
		for minute, t := range minutes {
			for _, sec := range t.Seconds {
				if i := minute*60 + int64(sec[0]) - first; i >= 0 && i < int64(len(out)) {
					out[i].Completed += sec[1]
					out[i].Failed += sec[2]
				}
			}
		}
	}
}

// addTimings adds the other nodes' slots of the minutes from first to
// last to queues and kinds (name → minute → slot).
func (s *sharedTelemetry) addTimings(first, last int64, queues, kinds map[string]map[int64]*timingSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(into map[string]map[int64]*timingSlot, minute int64, from map[string]*wireSlot) {
		for name, w := range from {
			if into[name] == nil {
				into[name] = map[int64]*timingSlot{}
			}
			sl := into[name][minute]
			if sl == nil {
				sl = &timingSlot{minute: minute}
				into[name][minute] = sl
			}
			w.addTo(sl)
		}
	}
	nodes := make([]string, 0, len(s.others))
	for node := range s.others {
		nodes = append(nodes, node)
	}
	slices.Sort(nodes) // a name beyond maxTimingKeys lands alike every time
	for _, node := range nodes {
		for minute, t := range s.others[node] {
			if minute < first || minute > last {
				continue
			}
			add(queues, minute, t.Queues)
			add(kinds, minute, t.Kinds)
		}
	}
}
