package pets

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// StreamPrefix starts the name of a pet's event stream: pet-42.
const StreamPrefix = "pet-"

// Stream is the name of a pet's event stream.
func Stream(id int64) string { return StreamPrefix + strconv.FormatInt(id, 10) }

// ParseStream returns the pet id of a pet stream's name, and false for any
// other name.
func ParseStream(name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, StreamPrefix)
	if !ok || rest == "" || rest[0] == '0' || rest[0] == '+' || rest[0] == '-' {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// Watchers is the registry of who watches which pet: how many event streams
// are open on each pet's stream on this node, fed by the hub's client
// counts (Update is an events.Config.OnClients), and, when several nodes
// share the database, how many viewers the other nodes have (SetRemote,
// read from their presence). Count and Counts are the sum; Local and
// LocalCounts this node's own, which change at once, without waiting for
// any database. It is safe for concurrent use.
type Watchers struct {
	mu      sync.Mutex
	pets    map[int64]*watch
	seq     int64
	touched map[int64]struct{} // counts changed since the last Take
	joined  bool               // the set of watched pets changed since the last Take
	changed chan struct{}
	// mirror receives this node's count of a pet's stream each time it
	// changes (cluster.Presence, for the other nodes); nil on one node.
	mirror Mirror
}

// Mirror receives this node's viewer count of a pet's stream (topic: the
// stream's name) each time it changes: cluster.Presence's Set.
type Mirror interface {
	Set(topic string, n int)
}

type watch struct {
	clients int   // this node's streams
	remote  int   // the other nodes' viewers, as last read
	since   int64 // order in which pets became watched (on any node)
}

// NewWatchers makes an empty registry.
func NewWatchers() *Watchers {
	return &Watchers{pets: map[int64]*watch{}, touched: map[int64]struct{}{}, changed: make(chan struct{}, 1)}
}

// Update records that a stream now has clients clients. Streams that are not
// a pet's are ignored. It never blocks.
func (w *Watchers) Update(stream string, clients int) {
	id, ok := ParseStream(stream)
	if !ok {
		return
	}
	w.mu.Lock()
	w.set(id, clients)
	w.mu.Unlock()
	w.signal()
}

// set records this node's count; called with w.mu held. The mirror gets
// it in the same order as the changes (under w.mu).
func (w *Watchers) set(id int64, clients int) {
	clients = max(clients, 0)
	cur := w.pets[id]
	switch {
	case cur == nil && clients == 0, cur != nil && cur.clients == clients:
		return
	case cur == nil:
		w.seq++
		w.pets[id] = &watch{clients: clients, since: w.seq}
		w.joined = true
	case clients == 0 && cur.remote == 0:
		delete(w.pets, id)
		w.joined = true
	default:
		cur.clients = clients
	}
	w.touched[id] = struct{}{}
	if w.mirror != nil {
		w.mirror.Set(Stream(id), clients)
	}
}

// SetMirror sends this node's counts to m from now on, starting with every
// count it has: the other nodes read them from there (cluster.Presence).
func (w *Watchers) SetMirror(m Mirror) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mirror = m
	for id, c := range w.pets {
		if c.clients > 0 {
			m.Set(Stream(id), c.clients)
		}
	}
}

// SetRemote replaces the other nodes' viewer counts with remote (pet id →
// viewers on every other node). A pet watched only elsewhere joins the
// watched set (the active list shows it); a pet whose total changes and
// that this node watches is touched, so its page shows the new "N
// watching".
func (w *Watchers) SetRemote(remote map[int64]int) {
	w.mu.Lock()
	changed := false
	for id, c := range w.pets {
		n := max(0, remote[id])
		if n == c.remote {
			continue
		}
		changed = true
		c.remote = n
		if c.clients > 0 {
			w.touched[id] = struct{}{}
		}
		if n == 0 && c.clients == 0 {
			delete(w.pets, id)
			w.joined = true
		}
	}
	for id, n := range remote {
		if n <= 0 || w.pets[id] != nil {
			continue
		}
		changed = true
		w.seq++
		w.pets[id] = &watch{remote: n, since: w.seq}
		w.joined = true
	}
	w.mu.Unlock()
	if changed {
		w.signal()
	}
}

func (w *Watchers) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Reconcile replaces every pet's count with the hub's (stream name → client
// count), correcting counts that concurrent joins and leaves reported out of
// order.
func (w *Watchers) Reconcile(clients map[string]int) {
	seen := map[int64]bool{}
	w.mu.Lock()
	for name, n := range clients {
		if id, ok := ParseStream(name); ok {
			seen[id] = true
			w.set(id, n)
		}
	}
	for id, c := range w.pets {
		if !seen[id] && c.clients > 0 {
			w.set(id, 0)
		}
	}
	changed := len(w.touched) > 0
	w.mu.Unlock()
	if changed {
		w.signal()
	}
}

// Count is how many viewers watch pet id right now: this node's streams
// and the other nodes' viewers.
func (w *Watchers) Count(id int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.pets[id]; c != nil {
		return c.clients + c.remote
	}
	return 0
}

// Local is how many of this node's streams watch pet id right now.
func (w *Watchers) Local(id int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.pets[id]; c != nil {
		return c.clients
	}
	return 0
}

// Len is how many pets this node's streams watch right now.
func (w *Watchers) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.pets {
		if c.clients > 0 {
			n++
		}
	}
	return n
}

// Watched lists the pets watched on any node, the most recently watched
// first.
func (w *Watchers) Watched() []int64 { return w.watched(false) }

// LocalWatched lists the pets this node's streams watch, the most recently
// watched first: the pages this node publishes to.
func (w *Watchers) LocalWatched() []int64 { return w.watched(true) }

func (w *Watchers) watched(local bool) []int64 {
	w.mu.Lock()
	type entry struct{ id, since int64 }
	all := make([]entry, 0, len(w.pets))
	for id, c := range w.pets {
		if !local || c.clients > 0 {
			all = append(all, entry{id, c.since})
		}
	}
	w.mu.Unlock()
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.since, a.since) })
	out := make([]int64, len(all))
	for i, e := range all {
		out[i] = e.id
	}
	return out
}

// Counts returns the viewers of each of ids, on every node.
func (w *Watchers) Counts(ids []int64) []int { return w.counts(ids, false) }

// LocalCounts returns how many of this node's streams watch each of ids.
func (w *Watchers) LocalCounts(ids []int64) []int { return w.counts(ids, true) }

func (w *Watchers) counts(ids []int64, local bool) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, len(ids))
	for i, id := range ids {
		if c := w.pets[id]; c != nil {
			out[i] = c.clients
			if !local {
				out[i] += c.remote
			}
		}
	}
	return out
}

// Changed is signalled (without blocking, coalesced) whenever a count changes.
func (w *Watchers) Changed() <-chan struct{} { return w.changed }

// Take returns the pets whose counts changed since the last Take (those
// this node watches, for a remote change), and whether the set of pets
// watched on any node changed (a pet became watched or unwatched).
func (w *Watchers) Take() (touched []int64, setChanged bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.touched {
		touched = append(touched, id)
	}
	clear(w.touched)
	setChanged, w.joined = w.joined, false
	slices.Sort(touched)
	return touched, setChanged
}
