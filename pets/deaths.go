package pets

// deaths.go holds the deaths: recorded by the node that leads the
// maintenance (sweep, at start and every tick), and the counts re-read by
// the others.

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
)

// sweep records every death due by now, in batches; call with s.work held.
func (s *Sim) sweep(ctx context.Context, now time.Time) (int, error) {
	total, listed, resync := 0, 0, false
	// Each batch is a step of leader-only work: a node that lost the lead
	// mid-way stops before the next one.
	for s.leading() {
		var dead []store.Pet
		err := s.store.InTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			dead, err = store.KillDuePetsTx(ctx, tx, now, s.rules.Lifespan(), s.cfg.SweepBatch)
			return err
		})
		if err != nil {
			return total, err
		}
		if len(dead) == 0 {
			break
		}
		total += len(dead)
		ids := make([]int64, len(dead))
		for i, p := range dead {
			ids[i] = p.ID
		}
		viewers := s.watchers.Counts(ids)
		local := s.watchers.LocalCounts(ids)
		watchedDied := false
		for i, p := range dead {
			st := s.rules.State(p, now)
			st.Viewers = viewers[i]
			if local[i] > 0 && s.mourn(p.ID) {
				s.pub.Died(st)
			}
			watchedDied = watchedDied || st.Viewers > 0
			if listed < s.cfg.ListedDeaths {
				s.pub.Listed(st, false)
				listed++
			} else {
				resync = true
			}
		}
		s.mu.Lock()
		s.counts.Alive = max(0, s.counts.Alive-len(dead))
		s.counts.Dead += len(dead)
		s.countsDirty = true
		s.activeDirty = s.activeDirty || watchedDied
		s.mu.Unlock()
		if len(dead) < s.cfg.SweepBatch {
			break
		}
	}
	if resync {
		s.pub.Resync()
	}
	return total, nil
}

// leading reports whether this node records deaths (Config.IsLeader).
func (s *Sim) leading() bool { return s.cfg.IsLeader == nil || s.cfg.IsLeader() }

// recount re-reads the alive and dead counts (a node that does not lead:
// another node records the deaths, and adoptions happen on every node).
func (s *Sim) recount(ctx context.Context) error {
	c, err := s.store.CountPets(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if c != s.counts {
		s.counts, s.countsDirty = c, true
		// A death may take a pet off the active list.
		s.activeDirty = true
	}
	s.mu.Unlock()
	return nil
}
