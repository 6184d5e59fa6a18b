package door

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latchdoor/latch/store"
)

// minutesPerDay bounds Window.To.
const minutesPerDay = 24 * 60

// unlockSchedule is a validated store.Schedule in the door's time zone.
type unlockSchedule struct {
	weekly   [7][]store.Window
	holidays map[string]bool // YYYY-MM-DD
	loc      *time.Location
}

// compileSchedule validates s. An unlock schedule must have at least one
// window: the store's "empty means always" would hold the door open for good.
func compileSchedule(s *store.Schedule, loc *time.Location) (*unlockSchedule, error) {
	if loc == nil {
		return nil, errors.New("unlock schedule: no time zone")
	}
	u := &unlockSchedule{loc: loc, holidays: map[string]bool{}}
	n := 0
	for day, ws := range s.Weekly {
		for _, w := range ws {
			if w.From >= w.To || w.To > minutesPerDay {
				return nil, fmt.Errorf("unlock schedule: %s window %d-%d: want From < To <= %d minutes", time.Weekday(day), w.From, w.To, minutesPerDay)
			}
		}
		u.weekly[day] = slices.Clone(ws)
		n += len(ws)
	}
	if n == 0 {
		return nil, errors.New("unlock schedule: no windows; an empty schedule would hold the door open at all times (leave UnlockSchedule nil for none)")
	}
	for _, h := range s.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return nil, fmt.Errorf("unlock schedule: holiday %q: want YYYY-MM-DD", h)
		}
		u.holidays[h] = true
	}
	return u, nil
}

// openAt reports whether the schedule holds the door open at t.
func (u *unlockSchedule) openAt(t time.Time) bool {
	lt := t.In(u.loc)
	if u.holidays[lt.Format(time.DateOnly)] {
		return false
	}
	m := lt.Hour()*60 + lt.Minute()
	for _, w := range u.weekly[lt.Weekday()] {
		if m >= int(w.From) && m < int(w.To) {
			return true
		}
	}
	return false
}

// nextChange returns the first instant after t at which openAt changes, or a
// time about a week ahead at which to look again if it does not change
// before then.
func (u *unlockSchedule) nextChange(t time.Time) time.Time {
	cur := u.openAt(t)
	lt := t.In(u.loc)
	y, mo, d := lt.Date()
	var cands []time.Time
	for i := range 9 {
		day := time.Date(y, mo, d+i, 0, 0, 0, 0, u.loc)
		cands = append(cands, day)
		for _, w := range u.weekly[day.Weekday()] {
			cands = append(cands,
				time.Date(y, mo, d+i, 0, int(w.From), 0, 0, u.loc),
				time.Date(y, mo, d+i, 0, int(w.To), 0, 0, u.loc))
		}
	}
	slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range cands {
		if c.After(t) && u.openAt(c) != cur {
			return c
		}
	}
	return cands[len(cands)-1]
}
