package site

import (
	"fmt"
	"slices"
	"strings"

	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// Recertification: the holders a review of a door group asks about, read
// by the access reports' code (Who, at each door of the group), and the
// change that withdraws a holder's access through the group.

// groupDoors returns the doors in group now, and every door.
func (s *Site) groupDoors(group string) (in, all []sitestore.Door, err error) {
	all, err = s.db.ListDoors()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range all {
		if slices.Contains(d.Groups, group) {
			in = append(in, d)
		}
	}
	return in, all, nil
}

// GroupHolders returns every holder with a card that reaches a door of
// group (the cards of the door's view, as Who reports them, whatever the
// door would decide now), with each such card and door, sorted by holder;
// the group's doors; and the ACL seq read.
func (s *Site) GroupHolders(group string, q AccessQuery) ([]sitestore.ReviewHolder, []string, uint64, error) {
	doors, _, err := s.groupDoors(group)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("site: holders of group %s: %w", group, err)
	}
	if len(doors) == 0 {
		return nil, nil, 0, fmt.Errorf("site: group %q has no door: %w", group, sitestore.ErrNotFound)
	}
	var ids []string
	var seq uint64
	byHolder := map[string]*sitestore.ReviewHolder{}
	for _, d := range doors {
		ids = append(ids, d.ID)
		rep, err := s.Who(d.ID, q)
		if err != nil {
			return nil, nil, 0, err
		}
		seq = max(seq, rep.Seq)
		for _, e := range rep.Entries {
			h := byHolder[e.Holder]
			if h == nil {
				h = &sitestore.ReviewHolder{Holder: e.Holder, Name: e.HolderName}
				byHolder[e.Holder] = h
			}
			i := slices.IndexFunc(h.Cards, func(c sitestore.ReviewCard) bool { return c.UID == e.UID })
			if i < 0 {
				h.Cards = append(h.Cards, sitestore.ReviewCard{UID: e.UID})
				i = len(h.Cards) - 1
			}
			h.Cards[i].Access = append(h.Cards[i].Access, sitestore.ReviewAccess{Door: e.Door, Via: e.Via, Decision: e.Decision, Reason: string(e.Reason)})
		}
	}
	out := make([]sitestore.ReviewHolder, 0, len(byHolder))
	for _, h := range byHolder {
		slices.SortFunc(h.Cards, func(a, b sitestore.ReviewCard) int { return strings.Compare(a.UID, b.UID) })
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b sitestore.ReviewHolder) int { return strings.Compare(a.Holder, b.Holder) })
	return out, ids, seq, nil
}

// WithdrawGroup returns the ops that take away holder's access to the
// doors of group and leave the rest of it: each of the holder's cards
// whose door list reaches a door of the group loses the group and the ids
// of the group's doors, and an entry that also reaches other doors ("*",
// or another group a door of this one is in) is replaced by the ids of
// the doors outside the group it reached. None when no card reaches the
// group. The cards keep their UID, PIN, dates, schedule and flags.
func (s *Site) WithdrawGroup(holder, group string) ([]store.Op, error) {
	in, all, err := s.groupDoors(group)
	if err != nil {
		return nil, fmt.Errorf("site: withdraw %s from %s: %w", holder, group, err)
	}
	reaches := func(doors []string) bool {
		for _, d := range in {
			if _, ok := opensVia(doors, d.ID, d.Groups); ok {
				return true
			}
		}
		return false
	}
	inGroup := func(id string) bool {
		return slices.ContainsFunc(in, func(d sitestore.Door) bool { return d.ID == id })
	}
	uids, err := s.db.CardsOf(holder)
	if err != nil {
		return nil, fmt.Errorf("site: withdraw %s from %s: %w", holder, group, err)
	}
	var ops []store.Op
	for _, uid := range uids {
		c, err := s.db.Card(uid)
		if err != nil {
			return nil, err
		}
		if !reaches(c.Doors) {
			continue
		}
		var doors []string
		add := func(e string) {
			if !slices.Contains(doors, e) {
				doors = append(doors, e)
			}
		}
		for _, e := range c.Doors {
			switch {
			case e == group || inGroup(e):
			case e == "*" || slices.ContainsFunc(in, func(d sitestore.Door) bool { return slices.Contains(d.Groups, e) }):
				for _, d := range all {
					if _, ok := opensVia([]string{e}, d.ID, d.Groups); ok && !inGroup(d.ID) {
						add(d.ID)
					}
				}
			default:
				add(e)
			}
		}
		c.Doors = doors
		ops = append(ops, store.Op{Kind: store.OpUpsertCard, Card: &c})
	}
	return ops, nil
}
