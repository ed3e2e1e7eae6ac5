package pets

// What visitors do and see: the watched pets, the counts, a pet's state,
// and adopting, feeding and treating.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/phonehome/phonehome/store"
)

// Active is the set of living pets being watched right now.
type Active struct {
	// Pets are the most recently watched living pets, newest first:
	// ActiveShown+1 of them at most, so that every page can leave itself out
	// and still list ActiveShown.
	Pets []State
	// Total is how many living pets are watched.
	Total int
	// Watched are all the watched living pets: the pages that get the list.
	Watched []int64

	watched map[int64]bool // Watched as a set, when made by the Sim
}

// For returns what pet id's page shows: up to ActiveShown other watched pets,
// how many other pets are watched in all, and whether this list is the one
// shared by every page whose pet is not among Pets (so it can be rendered
// once for all of them).
func (a Active) For(id int64) (others []State, total int, shared bool) {
	self := slices.IndexFunc(a.Pets, func(s State) bool { return s.ID == id })
	total = a.Total
	isWatched := a.watched[id]
	if a.watched == nil {
		isWatched = slices.Contains(a.Watched, id)
	}
	if self >= 0 || isWatched {
		total--
	}
	others = make([]State, 0, ActiveShown)
	for i, s := range a.Pets {
		if i != self && len(others) < ActiveShown {
			others = append(others, s)
		}
	}
	return others, max(0, total), self < 0
}

// ActivePets returns the living pets being watched right now.
func (s *Sim) ActivePets(ctx context.Context) (Active, error) {
	return s.active(ctx, s.now())
}

func (s *Sim) active(ctx context.Context, now time.Time) (Active, error) {
	states, err := s.states(ctx, s.watchers.Watched(), now)
	if err != nil {
		return Active{}, err
	}
	a := Active{Watched: make([]int64, 0, len(states)), watched: make(map[int64]bool, len(states))}
	var nextDeath time.Time
	for _, st := range states {
		if !st.Alive || st.Viewers == 0 {
			continue
		}
		if nextDeath.IsZero() || st.DiesAt.Before(nextDeath) {
			nextDeath = st.DiesAt
		}
		a.Total++
		a.Watched = append(a.Watched, st.ID)
		a.watched[st.ID] = true
		if len(a.Pets) <= ActiveShown {
			a.Pets = append(a.Pets, st)
		}
	}
	s.mu.Lock()
	s.activeDeath = nextDeath
	s.mu.Unlock()
	return a, nil
}

// Counts is how many pets are alive and dead, as recorded (kept current by
// adoptions and the death sweep, so it costs no query).
func (s *Sim) Counts() store.PetCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// changed marks a pet for publishing by the loop.
func (s *Sim) changed(id int64) {
	s.mu.Lock()
	s.dirty[id] = struct{}{}
	s.mu.Unlock()
	s.poke()
}

// Get returns a pet's state now, or store.ErrNotFound.
func (s *Sim) Get(ctx context.Context, id int64) (State, error) {
	p, err := s.store.GetPet(ctx, id)
	if err != nil {
		return State{}, err
	}
	st := s.rules.State(p, s.now())
	st.Viewers = s.watchers.Count(id)
	return st, nil
}

// State derives a stored pet's state now, with its viewers.
func (s *Sim) State(p store.Pet) State {
	st := s.rules.State(p, s.now())
	st.Viewers = s.watchers.Count(p.ID)
	return st
}

// Adopt makes a new pet for a keeper (creating the keeper's row if needed):
// hunger NewbornHunger, age 0, born now. Invalid names and species are
// *ValidationError.
func (s *Sim) Adopt(ctx context.Context, keeperID, name, species string) (State, error) {
	if keeperID == "" {
		return State{}, errors.New("adopt: no keeper")
	}
	name, err := ValidName(name)
	if err != nil {
		return State{}, err
	}
	sp, err := ValidSpecies(species)
	if err != nil {
		return State{}, err
	}
	now := s.now()
	var p store.Pet
	err = s.store.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := store.EnsureKeeperTx(ctx, tx, keeperID, TreatsPerWindow, now); err != nil {
			return err
		}
		var err error
		p, err = store.InsertPetTx(ctx, tx, store.NewPet{KeeperID: keeperID, Name: name, Species: sp, BornAt: now, Hunger: NewbornHunger})
		return err
	})
	if err != nil {
		return State{}, fmt.Errorf("adopt: %w", err)
	}
	s.mu.Lock()
	s.counts.Alive++
	s.countsDirty = true
	s.mu.Unlock()
	st := s.rules.State(p, now)
	s.pub.Listed(st, true)
	s.poke()
	return st, nil
}

// Feed feeds a keeper's own living pet: hunger −FeedAmount, down to 0. The
// change is committed when Feed returns. Another keeper's pet is ErrNotYours,
// a dead one ErrDead (as *RuleError), an unknown one store.ErrNotFound.
func (s *Sim) Feed(ctx context.Context, keeperID string, id int64) (State, error) {
	st, err := s.lowerHunger(ctx, id, FeedAmount, func(tx *sqlx.Tx, p store.Pet, before State, now time.Time) error {
		switch {
		case p.KeeperID != keeperID:
			return refuse(ErrNotYours, "%s is not your pet: only its keeper can feed it (you can give it a treat while someone is watching it)", p.Name)
		case !before.Alive:
			return refuse(ErrDead, "%s has died and cannot be fed any more", p.Name)
		}
		return nil
	})
	if err != nil {
		return State{}, fmt.Errorf("feed pet %d: %w", id, err)
	}
	return st, nil
}

// Treat gives one of a keeper's treats to another keeper's living pet that
// someone is watching right now: hunger −TreatAmount, down to 0. The refusals
// are *RuleError: ErrOwnPet, ErrDead, ErrNotWatched, ErrNoTreats.
func (s *Sim) Treat(ctx context.Context, keeperID string, id int64) (State, Treats, error) {
	if keeperID == "" {
		return State{}, Treats{}, errors.New("treat: no keeper")
	}
	var treats Treats
	st, err := s.lowerHunger(ctx, id, TreatAmount, func(tx *sqlx.Tx, p store.Pet, before State, now time.Time) error {
		switch {
		case p.KeeperID == keeperID:
			return refuse(ErrOwnPet, "%s is your own pet: treats are for other keepers' pets (feed yours instead)", p.Name)
		case !before.Alive:
			return refuse(ErrDead, "%s has died and cannot have treats any more", p.Name)
		}
		// Watched on any node: see watchedNow.
		if watched, err := s.watchedNow(ctx, id); err != nil {
			return err
		} else if !watched {
			return refuse(ErrNotWatched, "nobody is watching %s right now: treats go to pets someone is watching", p.Name)
		}
		if err := store.EnsureKeeperTx(ctx, tx, keeperID, TreatsPerWindow, now); err != nil {
			return err
		}
		k, err := store.GetKeeperTx(ctx, tx, keeperID)
		if err != nil {
			return err
		}
		left, windowStart := treatsAt(k, now)
		if left <= 0 {
			return refuse(ErrNoTreats, "no treats left: %d more at %s UTC", TreatsPerWindow, windowStart.Add(TreatWindow).UTC().Format("15:04"))
		}
		treats = TreatsOf(store.Keeper{ID: keeperID, TreatsLeft: left - 1, WindowStart: windowStart}, now)
		return store.SetTreatsTx(ctx, tx, keeperID, left-1, windowStart)
	})
	if err != nil {
		return State{}, Treats{}, fmt.Errorf("treat pet %d: %w", id, err)
	}
	return st, treats, nil
}

// lowerHunger lowers pet id's hunger by amount, down to 0, in one
// transaction once allow, given the pet and its state before, has found
// nothing to refuse (and paid for it, in the same transaction), and
// returns its state after.
func (s *Sim) lowerHunger(ctx context.Context, id int64, amount int, allow func(tx *sqlx.Tx, p store.Pet, before State, now time.Time) error) (State, error) {
	now := s.now()
	var st State
	err := s.store.InTx(ctx, func(tx *sqlx.Tx) error {
		p, err := store.GetPetTx(ctx, tx, id)
		if err != nil {
			return err
		}
		before := s.rules.State(p, now)
		if err := allow(tx, p, before, now); err != nil {
			return err
		}
		p, err = store.SetPetHungerTx(ctx, tx, id, max(0, before.Hunger-amount), now)
		if err != nil {
			return err
		}
		st = s.rules.State(p, now)
		if s.notify {
			// The other nodes' pages of this pet show it once it commits.
			return store.NotifyPetTx(ctx, tx, id, s.cfg.Node)
		}
		return nil
	})
	if err != nil {
		return State{}, err
	}
	st.Viewers = s.watchers.Count(id)
	s.changed(id)
	return st, nil
}

// Treats is a keeper's treat budget now.
func (s *Sim) Treats(ctx context.Context, keeperID string) (Treats, error) {
	k, err := s.store.GetKeeper(ctx, keeperID)
	if errors.Is(err, store.ErrNotFound) {
		return Treats{Left: TreatsPerWindow}, nil
	}
	if err != nil {
		return Treats{}, err
	}
	return TreatsOf(k, s.now()), nil
}
