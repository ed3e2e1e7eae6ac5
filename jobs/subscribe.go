package jobs

import (
	"sync"
	"sync/atomic"
)

// subscribers are the receivers of changed job ids. The list is copied on
// every change of it and read without a lock, because changes are reported
// from the engine's hot paths and subscribing happens a few times at most.
type subscribers struct {
	mu   sync.Mutex // serialises Subscribe and unsubscribe
	next int
	list atomic.Pointer[[]subscriber]
}

type subscriber struct {
	id int
	fn func(ids []int64)
}

// Subscribe adds fn to the receivers of the ids of jobs whose rows changed,
// with Config.OnChange's contract: once per committed batch, after the
// commit and without engine locks held; from several goroutines at once, so
// fn must not block. Subscribe before Start to hear of every change. The
// returned function removes fn again.
func (e *Engine) Subscribe(fn func(ids []int64)) (unsubscribe func()) {
	s := &e.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	id := s.next
	var list []subscriber
	if old := s.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, subscriber{id: id, fn: fn})
	s.list.Store(&list)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		var kept []subscriber
		for _, sub := range *s.list.Load() {
			if sub.id != id {
				kept = append(kept, sub)
			}
		}
		s.list.Store(&kept)
	}
}

// hasSubscribers reports whether anyone hears of changes, so that ids
// nobody will hear of are not kept.
func (e *Engine) hasSubscribers() bool {
	if e.cfg.OnChange != nil {
		return true
	}
	list := e.subs.list.Load()
	return list != nil && len(*list) > 0
}

// changed reports ids to OnChange and to every subscriber.
func (e *Engine) changed(ids []int64) {
	if len(ids) == 0 {
		return
	}
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(ids)
	}
	if list := e.subs.list.Load(); list != nil {
		for _, sub := range *list {
			sub.fn(ids)
		}
	}
}
