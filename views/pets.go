package views

import (
	"fmt"
	"strings"
	"time"

	"github.com/phonehome/phonehome/pets"
)

// PetView is a pet as pages show it.
type PetView struct {
	pets.State
	// Mine is true when the visitor is the pet's keeper.
	Mine bool
	// OOB marks the fragment for an out-of-band swap (live events).
	OOB bool
}

// LivedText is the pet's age as a duration: "3 h 25 min".
func (v PetView) LivedText() string { return Lifetime(v.Lived) }

// DiesInText is how long the pet has left: "13 h 52 min".
func (v PetView) DiesInText() string { return Lifetime(max(0, v.DiesAt.Sub(v.At))) }

// TicksLeft is how many ticks the pet has left to live.
func (v PetView) TicksLeft() int { return max(0, pets.LifeTicks+1-v.Age) }

// HungerLabel says in words how hungry the pet is.
func (v PetView) HungerLabel() string {
	switch {
	case v.Hunger >= pets.MaxHunger:
		return "starving"
	case v.Hunger >= 400:
		return "very hungry"
	case v.Hunger >= 250:
		return "hungry"
	case v.Hunger >= 100:
		return "peckish"
	case v.Hunger > 0:
		return "content"
	}
	return "full"
}

// Kind is "A cat", "An owl": the article and the species.
func (v PetView) Kind() string {
	if v.Species == "" {
		return "A pet"
	}
	if strings.ContainsRune("aeiou", rune(string(v.Species)[0])) {
		return "An " + string(v.Species)
	}
	return "A " + string(v.Species)
}

// Title is the pet's name as a title: with ☠️ once it has died.
func (v PetView) Title() string {
	if !v.Alive {
		return v.Name + " ☠️"
	}
	return v.Name
}

// ActiveView is the "Active pets" box of a pet's page.
type ActiveView struct {
	// Others are the other watched pets shown, each with Give Treat.
	Others []PetView
	// Total is how many other pets are watched.
	Total int
	OOB   bool
}

// More is how many watched pets are not listed.
func (a ActiveView) More() int { return max(0, a.Total-len(a.Others)) }

// NewActiveView is the box of the page of pet id.
func NewActiveView(a pets.Active, id int64, oob bool) ActiveView {
	others, total, _ := a.For(id)
	v := ActiveView{Total: total, OOB: oob, Others: make([]PetView, len(others))}
	for i, s := range others {
		v.Others[i] = PetView{State: s}
	}
	return v
}

// TreatsView is the visitor's treat budget.
type TreatsView struct {
	pets.Treats
	OOB bool
}

// RefillClock is the time of the refill: "14:05 UTC".
func (t TreatsView) RefillClock() string { return t.RefillAt.UTC().Format("15:04 MST") }

// Icons lists the treats, full ones first.
func (t TreatsView) Icons() []bool {
	out := make([]bool, pets.TreatsPerWindow)
	for i := range min(t.Left, len(out)) {
		out[i] = true
	}
	return out
}

// PetPage is the data of a pet's page, and of the fragment that replaces it
// when the pet dies.
type PetPage struct {
	Layout
	Pet         PetView
	Active      ActiveView
	Treats      TreatsView
	LastEventID int64
	Flash       *Flash
	// OOB marks the whole page body for an out-of-band swap (the death).
	OOB bool
}

// PetCounts is how many pets are alive and dead.
type PetCounts struct {
	Alive, Dead int
}

// Total is the number of pets.
func (c PetCounts) Total() int { return c.Alive + c.Dead }

// PetCountsView is the data of the counts on the list page.
type PetCountsView struct {
	C   PetCounts
	OOB bool
}

// PetsPage is the data of the list page.
type PetsPage struct {
	Layout
	Mine        []PetView
	NewKeeper   bool
	Rows        []PetView
	Counts      PetCountsView
	LastEventID int64
	Query       string
	AliveFilter string
	RowsURL     string
	NextURL     string
	// LiveAdoptions is true when new pets belong at the top of this listing
	// (the first page, newest first, not only the dead), so the page takes
	// "adopted" events.
	LiveAdoptions bool
	Tick          time.Duration
	Lifespan      time.Duration
}

// LifespanText is how long a pet lives, in words.
func (p PetsPage) LifespanText() string { return Lifetime(p.Lifespan) }

// NewPetPage is the data of the adoption form.
type NewPetPage struct {
	Layout
	Name       string
	Species    string
	Error      string
	ErrorField string
	AllSpecies []string
}

// FedMessage is the flash after a keeper fed their pet.
func FedMessage(s pets.State) string {
	return fmt.Sprintf("You fed %s. Hunger is now %d of %d.", s.Name, s.Hunger, pets.MaxHunger)
}

// TreatMessage is the flash after a treat, with the giver's treats left.
func TreatMessage(s pets.State, t pets.Treats) string {
	left := "no treats left"
	switch t.Left {
	case 1:
		left = "1 treat left"
	case 0:
	default:
		left = fmt.Sprintf("%d treats left", t.Left)
	}
	return fmt.Sprintf("You gave %s a treat (hunger now %d); you have %s.", s.Name, s.Hunger, left)
}
