package site

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Access reviews: who can open a door, what a holder can open, and why a
// card is refused. They are computed by the code that builds each door's
// view (opensVia: a card is in a door's view when its door list names
// "*", the door or one of the door's groups) and the door's own decision
// (store.JudgeCard, the card stage of store.Decide), on the allowlist at
// a moment: now, or a past moment replayed from the history of changes.

// DoorPolicy is what a door decides with besides its view: the mode and
// lockdown it asks its allowlist with (after its stale-allowlist policy),
// whether its clock is trusted, and its store's options (time zone,
// untrusted-clock policy). The caller knows the doors' settings; the
// site's database holds only their last status.
type DoorPolicy struct {
	Mode         store.Mode
	Lockdown     bool
	ClockTrusted bool
	Store        store.Options
	Notes        []string // what the policy assumes, for the report
}

// AccessQuery is the moment a report is for and the doors' policies.
type AccessQuery struct {
	At     time.Time                    // zero: now (the site's clock)
	Policy func(door string) DoorPolicy // the policy of each door
}

// AccessEntry is one card at one door: how its door list reaches the door,
// its rules, and the door's decision about it at the report's moment.
type AccessEntry struct {
	Door          string         `json:"door"`
	Holder        string         `json:"holder"`
	HolderName    string         `json:"holder_name,omitempty"`
	UID           string         `json:"uid"`                  // upper-case hex
	Via           string         `json:"via,omitempty"`        // "door" (the door's own id), a group, or "*"; empty: not in the door's view
	Schedule      store.Schedule `json:"schedule,omitzero"`    // empty: always
	ValidFrom     time.Time      `json:"valid_from,omitzero"`  // zero: no bound
	ValidUntil    time.Time      `json:"valid_until,omitzero"` // zero: no bound
	Mode          store.Mode     `json:"mode"`                 // the door's mode the decision was asked with
	PIN           string         `json:"pin"`                  // whether a PIN is needed, in words
	Revoked       string         `json:"revoked,omitempty"`    // the card's revocation reason
	HolderRevoked string         `json:"holder_revoked,omitempty"`
	Decision      string         `json:"decision"` // "opens", "opens with PIN" or "denied"
	Reason        store.Reason   `json:"reason"`   // the door's audit word
	Note          string         `json:"note,omitempty"`
	LastUse       time.Time      `json:"last_use,omitzero"` // the last granted event at the door (what: at any door)
	LastUseDoor   string         `json:"last_use_door,omitempty"`
	LastUseCut    bool           `json:"last_use_cut,omitempty"` // the search for it stopped early (see store/site.LastUseScan)
}

// AccessReport is a who or what report.
type AccessReport struct {
	At      time.Time     `json:"at"`  // the moment it is for
	Seq     uint64        `json:"seq"` // the global ACL seq in force then
	Door    string        `json:"door,omitempty"`
	Holder  string        `json:"holder,omitempty"`
	Notes   []string      `json:"notes,omitempty"` // what it assumes or cannot know
	Entries []AccessEntry `json:"entries"`
}

// Explanation is the door's decision about one card, and the rule that
// decided it.
type Explanation struct {
	AccessEntry
	At    time.Time `json:"at"`
	Seq   uint64    `json:"seq"`
	Rule  string    `json:"rule"`            // the deciding rule, in words
	Notes []string  `json:"notes,omitempty"` // what it assumes or cannot know
}

// accessMoment is the allowlist and the doors' groups at a moment.
type accessMoment struct {
	at     time.Time
	seq    uint64
	st     *aclState
	past   bool // at is before the last change: the state was replayed
	notes  []string
	groups map[string][]string // by door, filled as asked
}

// atMoment runs fn on the allowlist as it was at q.At: the live one when
// no change was committed after it, else the history of changes replayed
// up to it.
func (s *Site) atMoment(q AccessQuery, fn func(m *accessMoment) error) error {
	at := q.At
	if at.IsZero() {
		at = s.o.Now()
	}
	m := &accessMoment{at: at, groups: make(map[string][]string)}
	current := func() error {
		var ferr error
		s.hist.read(func(seq uint64, st *aclState) {
			m.seq, m.st = seq, st
			ferr = fn(m)
		})
		return ferr
	}
	if q.At.IsZero() {
		return current() // now: the live allowlist, no history to read
	}
	later, err := s.db.DeltasAfter(0, 0)
	if err != nil {
		return err
	}
	i, _ := slices.BinarySearchFunc(later, at, func(c sitestore.Change, t time.Time) int {
		if c.At.After(t) {
			return 1
		}
		return -1
	})
	if i == len(later) {
		return current()
	}
	h := newHistory()
	for _, ch := range later[:i] {
		if _, _, err := h.commit(ch.Ops); err != nil {
			return fmt.Errorf("site: replay change %d: %w", ch.Seq, err)
		}
	}
	m.seq, m.st, m.past = h.seq, &h.st, true
	return fn(m)
}

// doorGroups returns door's groups at the moment: its current ones now,
// the recorded ones in the past. A door whose groups at a past moment are
// not recorded is judged with its current groups, and the report says so.
func (s *Site) doorGroups(m *accessMoment, door string) ([]string, error) {
	if g, ok := m.groups[door]; ok {
		return g, nil
	}
	s.doorsMu.Lock()
	cur, known := s.groups[door]
	cur = slices.Clone(cur)
	s.doorsMu.Unlock()
	if !known {
		d, err := s.db.Door(door)
		if err != nil {
			return nil, err
		}
		cur = d.Groups
	}
	if !m.past {
		m.groups[door] = cur
		return cur, nil
	}
	g, err := s.db.DoorGroupsAt(door, m.at)
	if err != nil {
		return nil, err
	}
	if !g.Known {
		since := "this version of latch records them"
		if !g.First.IsZero() {
			since = "the first recorded change, " + g.First.UTC().Format(time.RFC3339)
		}
		m.notes = append(m.notes, fmt.Sprintf("door %s: its groups before %s are not recorded; its current groups (%s) are used", door, since, strings.Join(cur, ",")))
		g.Groups = cur
	}
	m.groups[door] = g.Groups
	return g.Groups, nil
}

// judge is the door's decision about card c at the moment: unknown_card
// when the door's view does not hold it, else store.JudgeCard with what
// the view holds.
func judge(m *accessMoment, c *store.Card, door string, groups []string, pol *DoorPolicy, f store.CardFacts) (AccessEntry, error) {
	e := AccessEntry{Door: door, Holder: c.HolderID, HolderName: c.HolderName, UID: fmt.Sprintf("%X", c.UID),
		Schedule: c.Schedule, ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil, Mode: pol.Mode}
	via, in := opensVia(c.Doors, door, groups)
	if via == door {
		via = "door"
	}
	e.Via = via
	if r, ok := m.st.revCard[string(c.UID)]; ok {
		e.Revoked, f.Revoked = orWord(r.Reason), true
	}
	if r, ok := m.st.revHold[c.HolderID]; ok {
		e.HolderRevoked, f.Revoked = orWord(r.Reason), true
	}
	if h, ok := m.st.holders[c.HolderID]; ok {
		f.Holder = &h
		if h.Name != "" {
			e.HolderName = h.Name
		}
	}
	e.PIN = pinWords(c, pol.Mode)
	if store.IsCodeKey(c.UID) {
		e.PIN = "not asked: a keypad code"
		if pol.Mode != store.ModeCardOrPIN {
			// The door takes a code typed alone in card-or-PIN mode only.
			e.Decision, e.Reason = "denied", store.ReasonUnknownCard
			e.Note = "a keypad code, typed without a card only at a door in card-or-pin mode; this door asks in " + string(pol.Mode)
			return e, nil
		}
	}
	card := c
	if !in {
		card = nil // not in the door's view: the door does not know it
	}
	f.Opens = true
	d, err := store.JudgeCard(card, &f, store.Request{UID: c.UID, Door: door, Mode: pol.Mode, Lockdown: pol.Lockdown,
		Now: m.at, ClockTrusted: pol.ClockTrusted}, &pol.Store)
	if err != nil {
		return e, fmt.Errorf("site: door %s, card %X: %w", door, c.UID, err)
	}
	e.Reason, e.Note = d.Reason, d.Note
	switch d.Outcome {
	case store.Granted:
		e.Decision = "opens"
	case store.NeedPIN:
		e.Decision, e.Reason = "opens with PIN", store.ReasonPINRequired
	default:
		e.Decision = "denied"
	}
	return e, nil
}

func orWord(s string) string {
	if s == "" {
		return "revoked"
	}
	return s
}

// pinWords says whether card c needs a PIN at a door in mode.
func pinWords(c *store.Card, mode store.Mode) string {
	switch {
	case mode != store.ModeCardPIN:
		return "not required: door mode " + string(mode)
	case c.Flags.CardOnly:
		return "not required: card-only card"
	case c.PINHash == "":
		return "required, none enrolled"
	}
	return "required"
}

// Who reports every card whose door list reaches door (the cards of the
// door's view at the moment), with the door's decision about each then
// and its last use at the door before it.
func (s *Site) Who(door string, q AccessQuery) (AccessReport, error) {
	rep := AccessReport{Door: door, Entries: []AccessEntry{}}
	pol := q.Policy(door)
	err := s.atMoment(q, func(m *accessMoment) error {
		rep.At, rep.Seq = m.at, m.seq
		groups, err := s.doorGroups(m, door)
		if err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(m.st.cards)) {
			c := m.st.cards[k]
			if _, in := opensVia(c.Doors, door, groups); !in {
				continue
			}
			e, err := judge(m, &c, door, groups, &pol, store.CardFacts{})
			if err != nil {
				return err
			}
			rep.Entries = append(rep.Entries, e)
		}
		rep.Notes = append(m.notes, pol.Notes...)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("site: who can open %s: %w", door, err)
	}
	return rep, s.lastUse(rep.Entries, door, rep.At, q.At.IsZero())
}

// What reports, for every card of holder, every door its door list
// reaches at the moment, with the door's decision then and the card's
// last use at that door.
func (s *Site) What(holder string, q AccessQuery) (AccessReport, error) {
	rep := AccessReport{Holder: holder, Entries: []AccessEntry{}}
	doors, err := s.db.ListDoors()
	if err != nil {
		return rep, err
	}
	var notes []string
	err = s.atMoment(q, func(m *accessMoment) error {
		rep.At, rep.Seq = m.at, m.seq
		var cards []store.Card
		for _, c := range m.st.cards {
			if c.HolderID == holder {
				cards = append(cards, c)
			}
		}
		if len(cards) == 0 {
			if _, ok := m.st.holders[holder]; !ok {
				return fmt.Errorf("holder %q: %w", holder, sitestore.ErrNotFound)
			}
		}
		slices.SortFunc(cards, func(a, b store.Card) int { return strings.Compare(string(a.UID), string(b.UID)) })
		for _, d := range doors {
			groups, err := s.doorGroups(m, d.ID)
			if err != nil {
				return err
			}
			pol := q.Policy(d.ID)
			for i := range cards {
				if _, in := opensVia(cards[i].Doors, d.ID, groups); !in {
					continue
				}
				e, err := judge(m, &cards[i], d.ID, groups, &pol, store.CardFacts{})
				if err != nil {
					return err
				}
				rep.Entries = append(rep.Entries, e)
				notes = addNotes(notes, pol.Notes)
			}
		}
		rep.Notes = append(m.notes, notes...)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("site: what %s can open: %w", holder, err)
	}
	for door, idx := range groupByDoor(rep.Entries) {
		sub := make([]AccessEntry, len(idx))
		for j, i := range idx {
			sub[j] = rep.Entries[i]
		}
		if err := s.lastUse(sub, door, rep.At, q.At.IsZero()); err != nil {
			return rep, err
		}
		for j, i := range idx {
			rep.Entries[i] = sub[j]
		}
	}
	return rep, nil
}

func addNotes(notes, more []string) []string {
	for _, n := range more {
		if !slices.Contains(notes, n) {
			notes = append(notes, n)
		}
	}
	return notes
}

func groupByDoor(es []AccessEntry) map[string][]int {
	out := make(map[string][]int)
	for i, e := range es {
		out[e.Door] = append(out[e.Door], i)
	}
	return out
}

// lastUse fills in each entry's last granted event at door before at
// (any time when now).
func (s *Site) lastUse(es []AccessEntry, door string, at time.Time, now bool) error {
	uids := make([]string, len(es))
	for i, e := range es {
		uids[i] = e.UID
	}
	if now {
		at = time.Time{}
	}
	lu, err := s.db.LastGranted(uids, door, at)
	if err != nil {
		return err
	}
	for i := range es {
		es[i].LastUse, es[i].LastUseDoor, es[i].LastUseCut = lu[i].Time, lu[i].Door, lu[i].Cut
	}
	return nil
}

// lockedUntil matches the end of a lockout in a locked_out event's detail.
var lockedUntil = regexp.MustCompile(`locked out until (\S+)`)

// Explain returns the decision door would make about the card uid at the
// moment, and the rule that decided it. The card's bad-PIN lockout is
// taken from the collected events (the last access event of the card at
// the door before the moment, when it is a lockout still running); the
// door's own bad-PIN limit is not known to the site. With pinEntered,
// a card that needs its PIN is taken as having typed it right.
func (s *Site) Explain(uid []byte, door string, pinEntered bool, q AccessQuery) (Explanation, error) {
	var x Explanation
	pol := q.Policy(door)
	f := store.CardFacts{}
	at := q.At
	if at.IsZero() {
		at = s.o.Now()
	}
	hex := fmt.Sprintf("%X", uid)
	pg, err := s.db.QueryPage(sitestore.Filter{UID: hex, Door: door, Type: store.TypeAccess, To: at}, "", 1, 0)
	if err != nil {
		return x, fmt.Errorf("site: explain %s at %s: %w", hex, door, err)
	}
	if len(pg.Records) == 1 {
		ev := pg.Records[0].Event
		if sm := lockedUntil.FindStringSubmatch(ev.Detail); ev.Reason == store.ReasonLockedOut && sm != nil {
			if t, err := time.Parse(time.RFC3339, strings.TrimRight(sm[1], ",;")); err == nil {
				f.LockFails, f.LockedUntil = 1, t
			}
		}
	}
	err = s.atMoment(q, func(m *accessMoment) error {
		x.At, x.Seq = m.at, m.seq
		groups, err := s.doorGroups(m, door)
		if err != nil {
			return err
		}
		c, ok := m.st.cards[string(uid)]
		if !ok {
			c = store.Card{UID: uid}
		}
		e, err := judge(m, &c, door, groups, &pol, f)
		if err != nil {
			return err
		}
		if !ok {
			e.PIN = ""
		}
		if e.Decision == "opens with PIN" && pinEntered {
			e.Decision, e.Reason = "opens", store.ReasonGranted
		}
		x.AccessEntry = e
		x.Rule = rule(&e, &c, ok, groups, pinEntered)
		x.Notes = append(m.notes, pol.Notes...)
		return nil
	})
	if err != nil {
		return x, fmt.Errorf("site: explain %s at %s: %w", hex, door, err)
	}
	es := []AccessEntry{x.AccessEntry}
	if err := s.lastUse(es, door, x.At, q.At.IsZero()); err != nil {
		return x, err
	}
	x.AccessEntry = es[0]
	return x, nil
}

// rule says in words which rule decided e.
func rule(e *AccessEntry, c *store.Card, known bool, groups []string, pinEntered bool) string {
	t := e.Note
	if t != "" {
		t = " (" + t + ")"
	}
	switch e.Reason {
	case store.ReasonUnknownCard:
		if !known {
			return "unknown_card: no card with this UID is enrolled"
		}
		return fmt.Sprintf("unknown_card: the card is not in door %s's view: its doors (%s) name neither the door, its groups (%s), nor *",
			e.Door, strings.Join(c.Doors, ","), strings.Join(groups, ","))
	case store.ReasonRevoked:
		if e.Revoked != "" {
			return "revoked: the card is revoked: " + e.Revoked
		}
		return "revoked: the holder is revoked: " + e.HolderRevoked
	case store.ReasonLockedOut:
		return "locked_out: too many bad PINs" + t
	case store.ReasonExpired:
		return "expired: the card is valid until " + e.ValidUntil.UTC().Format(time.RFC3339) + t
	case store.ReasonNotYetValid:
		return "not_yet_valid: the card is valid from " + e.ValidFrom.UTC().Format(time.RFC3339) + t
	case store.ReasonOutsideSchedule:
		if strings.HasPrefix(e.Note, "holiday ") {
			return "outside_schedule: " + e.Note + " is a holiday of the card's schedule"
		}
		return "outside_schedule: the moment is outside the card's weekly windows" + t
	case store.ReasonLockdown:
		return "lockdown: the door is in lockdown (or its stale-allowlist policy is override-only) and the card has no lockdown override"
	case store.ReasonPINRequired:
		if e.Decision == "denied" {
			return "pin_required: the door's mode is card+pin and no PIN is enrolled for the card" + t
		}
		return "pin_required: the card is acceptable; the door asks for its PIN (mode card+pin)" + t
	case store.ReasonGranted:
		if pinEntered && e.Mode == store.ModeCardPIN && !c.Flags.CardOnly {
			return "granted: the card is acceptable and its PIN was entered" + t
		}
		return "granted: the card is acceptable and needs no PIN here (" + e.PIN + ")" + t
	}
	return string(e.Reason) + t
}
