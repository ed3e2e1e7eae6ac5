package pets

// LivePet over several nodes sharing one PostgreSQL database: each node
// keeps its own pages' viewers in Watchers and mirrors them into the
// presence table (cluster.Presence), reads the other nodes' viewers back
// every PresenceEvery, and hears the other nodes' feeds and treats by
// LISTEN/NOTIFY. A pet's stream stays on the node whose page opened it:
// each node renders its own pages from the database.

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/phonehome/phonehome/internal/pglisten"
	"github.com/phonehome/phonehome/store"
)

// Defaults of the Config fields about several nodes.
const (
	// DefaultPresenceTTL is cluster.Presence's default TTL (3 × its 2 s
	// refresh): a node that died stops counting within it.
	DefaultPresenceTTL = 6 * time.Second
	// DefaultPresenceEvery is how often the other nodes' viewers are read:
	// one query a second per node, whatever the number of pets or pages.
	DefaultPresenceEvery = time.Second
)

// sweeper deletes the presence rows of nodes that died (cluster.Presence's
// Sweep). Readers ignore those rows already; deleting them keeps the table
// as small as the pages open now, however many nodes were killed (a node
// that starts again has a new name). Any node may do it, and each does
// every 2 × PresenceTTL: a DELETE of nothing, mostly.
type sweeper interface {
	Sweep(ctx context.Context) (int64, error)
}

// readPresence reads the other nodes' viewers and hands them to the
// watchers, which touch the pets whose "N watching" changed and wake the
// loop to publish them.
func (s *Sim) readPresence(ctx context.Context) {
	counts, err := s.store.PresenceElsewhere(ctx, s.cfg.Node, StreamPrefix, "", s.cfg.PresenceTTL)
	switch {
	case err != nil && ctx.Err() == nil:
		if !s.presenceFailing {
			s.log.Warn("cannot read the other nodes' viewers; showing the last read", "err", err)
		}
		s.presenceFailing = true
		return
	case err != nil:
		return
	case s.presenceFailing:
		s.presenceFailing = false
		s.log.Info("reading the other nodes' viewers again")
	}
	remote := make(map[int64]int, len(counts))
	for topic, n := range counts {
		if id, ok := ParseStream(topic); ok {
			remote[id] = n
		}
	}
	s.watchers.SetRemote(remote)

	if sw, ok := s.cfg.Presence.(sweeper); ok && time.Since(s.presenceSwept) >= 2*s.cfg.PresenceTTL {
		s.presenceSwept = time.Now()
		if _, err := sw.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("sweep the presence of dead nodes", "err", err)
		}
	}
}

// watchedNow reports whether pet id is watched on any node right now, for
// the treat rule: this node's count and the last read of the others', and
// when both say nobody, the others' rows read again (a viewer may have
// come on another node since the last read).
func (s *Sim) watchedNow(ctx context.Context, id int64) (bool, error) {
	if s.watchers.Count(id) > 0 {
		return true, nil
	}
	if s.cfg.Presence == nil {
		return false, nil
	}
	topic := Stream(id)
	counts, err := s.store.PresenceElsewhere(ctx, s.cfg.Node, StreamPrefix, topic, s.cfg.PresenceTTL)
	if err != nil {
		return false, err
	}
	return counts[topic] > 0, nil
}

// mourn reports whether pet id's death is still to be shown on this
// node's pages, and records that it is being shown.
func (s *Sim) mourn(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, done := s.mourned[id]; done {
		return false
	}
	s.mourned[id] = struct{}{}
	s.activeDirty = true // the dead pet leaves the active list
	return true
}

// forgetMourned drops the pets no page of this node watches any more.
func (s *Sim) forgetMourned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.mourned {
		if s.watchers.Local(id) == 0 {
			delete(s.mourned, id)
		}
	}
}

// heard handles a notification "<pet id> <node>": a pet another node
// changed is published again if this node's pages watch it. This node's
// own changes are published already.
func (s *Sim) heard(payload string) {
	idText, node, _ := strings.Cut(payload, " ")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || node == s.cfg.Node {
		return
	}
	if s.watchers.Local(id) > 0 {
		s.changed(id)
	}
}

// subscription is what the sim hears with Presence on PostgreSQL: each
// notification (see heard), and each (re)connection of the listener,
// after which every pet this node's pages watch is shown again, since
// changes made while nobody listened were announced to no one.
func (s *Sim) subscription() pglisten.Subscription {
	return pglisten.Subscription{
		Channels: []string{store.PetChannel},
		Notify:   func(_, payload string) { s.heard(payload) },
		Reconnected: func() {
			for _, id := range s.watchers.LocalWatched() {
				s.changed(id)
			}
		},
	}
}
