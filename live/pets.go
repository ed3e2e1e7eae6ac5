package live

import (
	"log/slog"
	"runtime"
	"sync"

	"github.com/phonehome/phonehome/pets"
	"github.com/phonehome/phonehome/store"
	"github.com/phonehome/phonehome/views"
)

// PetCountsView is LivePet's counts as the pages show them.
func PetCountsView(c store.PetCounts) views.PetCounts {
	return views.PetCounts{Alive: c.Alive, Dead: c.Dead}
}

// PetFeed renders what the simulation shows into the pages' own partials and
// publishes them: a watched pet's state and death on its stream pet-{id}, the
// active-pets box on every watched pet's stream, and rows and counts on the
// pets stream. It implements pets.Publisher.
type PetFeed struct {
	views *views.Views
	hub   Publisher
	log   *slog.Logger
}

var _ pets.Publisher = (*PetFeed)(nil)

// NewPetFeed makes the feed.
func NewPetFeed(v *views.Views, h Publisher, logger *slog.Logger) *PetFeed {
	return &PetFeed{views: v, hub: h, log: logger}
}

func (f *PetFeed) publish(stream, event string, partial views.Partial, data any) {
	html, err := f.views.Fragment(partial, data)
	if err != nil {
		f.log.Error("render pet fragment", "partial", partial, "err", err)
		return
	}
	f.publishHTML(stream, event, html)
}

func (f *PetFeed) publishHTML(stream, event string, html []byte) {
	if _, err := f.hub.Publish(stream, event, html); err != nil {
		f.log.Debug("publish pet event", "stream", stream, "err", err)
	}
}

// Live publishes watched pets' stats (age, hunger, watchers), each on its
// own stream. A tick's worth is rendered on every core.
func (f *PetFeed) Live(states []pets.State) {
	const perWorker = 64
	workers := min(runtime.GOMAXPROCS(0), (len(states)+perWorker-1)/perWorker)
	if workers <= 1 {
		for _, s := range states {
			f.publish(PetStream(s.ID), "", views.PartialPetStats, views.PetView{State: s, OOB: true})
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(states); i += workers {
				s := states[i]
				f.publish(PetStream(s.ID), "", views.PartialPetStats, views.PetView{State: s, OOB: true})
			}
		})
	}
	wg.Wait()
}

// Died replaces the whole of the pet's page with its final, not live, state.
func (f *PetFeed) Died(s pets.State) {
	f.publish(PetStream(s.ID), "", views.PartialPetMain, views.PetPage{Pet: views.PetView{State: s}, OOB: true})
}

// Active publishes every watched pet's "Active pets" box. All pages whose pet
// is not among the few listed get the same box, rendered once.
func (f *PetFeed) Active(a pets.Active) {
	var shared []byte
	for _, id := range a.Watched {
		if _, _, isShared := a.For(id); isShared && shared != nil {
			f.publishHTML(PetStream(id), "", shared)
			continue
		}
		v := views.NewActiveView(a, id, true)
		html, err := f.views.Fragment(views.PartialPetActive, v)
		if err != nil {
			f.log.Error("render active pets", "err", err)
			return
		}
		if _, _, isShared := a.For(id); isShared {
			shared = html
		}
		f.publishHTML(PetStream(id), "", html)
	}
}

// Listed publishes a pet's row on the list of all pets: a new one to put at
// the top (event "adopted"), or one that changed in place.
func (f *PetFeed) Listed(s pets.State, adopted bool) {
	if adopted {
		f.publish(PetsStream, AdoptedEvent, views.PartialPetAdopted, views.PetView{State: s})
		return
	}
	f.publish(PetsStream, "", views.PartialPetRow, views.PetView{State: s, OOB: true})
}

// Resync tells the list pages to reload their table.
func (f *PetFeed) Resync() {
	f.publishHTML(PetsStream, ResyncEvent, []byte("resync"))
}

// Counts publishes the alive/dead counts.
func (f *PetFeed) Counts(c store.PetCounts) {
	f.publish(PetsStream, CountsEvent, views.PartialPetCounts, views.PetCountsView{C: PetCountsView(c), OOB: true})
}
