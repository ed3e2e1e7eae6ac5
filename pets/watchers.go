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
// are open on each pet's stream, fed by the hub's client counts (Update is an
// events.Config.OnClients). It is safe for concurrent use.
type Watchers struct {
	mu      sync.Mutex
	pets    map[int64]*watch
	seq     int64
	touched map[int64]struct{} // counts changed since the last Take
	joined  bool               // the set of watched pets changed since the last Take
	changed chan struct{}
}

type watch struct {
	clients int
	since   int64 // order in which pets became watched
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

// set records a count; called with w.mu held.
func (w *Watchers) set(id int64, clients int) {
	cur := w.pets[id]
	switch {
	case clients <= 0 && cur == nil:
		return
	case clients <= 0:
		delete(w.pets, id)
		w.joined = true
	case cur == nil:
		w.seq++
		w.pets[id] = &watch{clients: clients, since: w.seq}
		w.joined = true
	case cur.clients == clients:
		return
	default:
		cur.clients = clients
	}
	w.touched[id] = struct{}{}
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
	for id := range w.pets {
		if !seen[id] {
			w.set(id, 0)
		}
	}
	changed := len(w.touched) > 0
	w.mu.Unlock()
	if changed {
		w.signal()
	}
}

// Count is how many streams watch pet id right now.
func (w *Watchers) Count(id int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.pets[id]; c != nil {
		return c.clients
	}
	return 0
}

// Len is how many pets are watched right now.
func (w *Watchers) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pets)
}

// Watched lists the watched pets, the most recently watched first.
func (w *Watchers) Watched() []int64 {
	w.mu.Lock()
	type entry struct{ id, since int64 }
	all := make([]entry, 0, len(w.pets))
	for id, c := range w.pets {
		all = append(all, entry{id, c.since})
	}
	w.mu.Unlock()
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.since, a.since) })
	out := make([]int64, len(all))
	for i, e := range all {
		out[i] = e.id
	}
	return out
}

// Counts returns the client count of each of ids.
func (w *Watchers) Counts(ids []int64) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, len(ids))
	for i, id := range ids {
		if c := w.pets[id]; c != nil {
			out[i] = c.clients
		}
	}
	return out
}

// Changed is signalled (without blocking, coalesced) whenever a count changes.
func (w *Watchers) Changed() <-chan struct{} { return w.changed }

// Take returns the pets whose counts changed since the last Take, and whether
// the set of watched pets changed (a pet became watched or unwatched).
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
