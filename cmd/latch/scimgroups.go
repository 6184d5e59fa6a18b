package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// SCIM Groups: a group is a door group of the same name.
//
//	GET    /scim/v2/Groups?filter=displayName eq "G"&startIndex=&count=&excludedAttributes=members
//	POST   /scim/v2/Groups          a group (and its members) → 201
//	GET    /scim/v2/Groups/{id}
//	PUT    /scim/v2/Groups/{id}     replaces the members
//	PATCH  /scim/v2/Groups/{id}     add, remove, replace of members
//	DELETE /scim/v2/Groups/{id}     204
//
// The displayName is the group's id and the door group it gives; it must
// be a latch group name (1-64 of a-z 0-9 _ -) and no door's id, and it
// does not change: a rename is refused (400, mutability), since the
// provider holds the id. A member (a user id: a holder id) gets the door
// group on every card of theirs; a card added to them later gets it too
// (api.scimGroupsOnNewCards). A member removed, or the group deleted,
// loses it on the cards the membership gave it to: a door group an admin
// put on a card by hand stays. Each change is one commit of the
// allowlist (every affected card) and one entry of the change log; a
// member id that is no user is refused (400, invalidValue) and nothing
// is applied.

// scimGroupSchema is the Group resource's schema URN.
const scimGroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"

// scimMember is a group's member, or a user's group.
type scimMember struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Ref     string `json:"$ref,omitempty"`
	Type    string `json:"type,omitempty"`
}

// scimGroup is the Group resource as latch reads and writes it.
type scimGroup struct {
	Schemas     []string     `json:"schemas"`
	ID          string       `json:"id,omitempty"`
	DisplayName string       `json:"displayName"`
	Members     []scimMember `json:"members,omitempty"`
	Meta        *scimMeta    `json:"meta,omitempty"`
}

// memberIDs returns the members' ids, each once, in order.
func memberIDs(ms []scimMember) []string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(out, m.Value) {
			out = append(out, m.Value)
		}
	}
	return out
}

// checkSCIMGroupName checks a displayName as a latch door group's name.
func checkSCIMGroupName(name string) error {
	if err := mqtt.CheckID("displayName", name); err != nil {
		return fmt.Errorf("%w: a group is a latch door group of the same name", err)
	}
	return nil
}

// checkSCIMMembers checks member values: user ids.
func checkSCIMMembers(ms []scimMember) error {
	for i, m := range ms {
		if m.Value == "" {
			return fmt.Errorf("member %d: value (the user's id) is missing", i+1)
		}
		if err := checkText(fmt.Sprintf("member %d", i+1), m.Value, 255); err != nil {
			return err
		}
	}
	return nil
}

// decodeSCIMGroup reads a Group resource.
func decodeSCIMGroup(b []byte) (scimGroup, error) {
	var g scimGroup
	if len(b) > maxSCIMBody {
		return g, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(b), maxSCIMBody)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, fmt.Errorf("group: %w", err)
	}
	if g.DisplayName == "" {
		return g, errors.New("displayName is missing")
	}
	if err := checkSCIMGroupName(g.DisplayName); err != nil {
		return g, err
	}
	return g, checkSCIMMembers(g.Members)
}

// memberOp is one change of a group's members, as a PatchOp says it:
// add, remove (all, when ids is nil) or replace.
type memberOp struct {
	op  string
	ids []string
}

// groupEdit is what a group's PatchOp does: its member changes in order,
// and the displayName it sets (nil: none).
type groupEdit struct {
	name *string
	ops  []memberOp
}

// decodeSCIMGroupPatch reads a Group PatchOp: add, remove and replace of
// members (path "members", the value an array of {value}, or one),
// remove by path `members[value eq "ID"]` (Okta), remove of "members"
// without a value (all), and replace or add of displayName, by path or
// in an object without one (Okta sends {"id", "displayName"}, Entra ID
// {"members": [...]}). Other attributes are ignored.
func decodeSCIMGroupPatch(b []byte) (groupEdit, error) {
	var e groupEdit
	p, err := readSCIMPatch(b)
	if err != nil {
		return e, err
	}
	for i, op := range p.Operations {
		o := strings.ToLower(op.Op)
		if o != "replace" && o != "add" && o != "remove" {
			return e, fmt.Errorf("operation %d: op %q: want add, remove or replace", i+1, op.Op)
		}
		if err := e.read(o, strings.TrimSpace(op.Path), op.Value); err != nil {
			return e, fmt.Errorf("operation %d: %w", i+1, err)
		}
	}
	if e.name != nil {
		if err := checkSCIMGroupName(*e.name); err != nil {
			return e, err
		}
	}
	return e, nil
}

// read adds one operation to e.
func (e *groupEdit) read(op, path string, v json.RawMessage) error {
	lower := strings.ToLower(path)
	switch {
	case path == "":
		if op == "remove" {
			return errors.New("remove needs a path")
		}
		var vals map[string]json.RawMessage
		if err := json.Unmarshal(v, &vals); err != nil {
			return fmt.Errorf("a value without a path must be an object: %w", err)
		}
		for k, sub := range vals {
			if err := e.read(op, k, sub); err != nil {
				return err
			}
		}
		return nil
	case lower == "displayname":
		if op == "remove" {
			return errors.New("displayName cannot be removed")
		}
		s, err := scimString(v)
		if err != nil {
			return fmt.Errorf("displayName: %w", err)
		}
		e.name = s
		return nil
	case lower == "members":
		if op == "remove" && (len(v) == 0 || string(v) == "null") {
			e.ops = append(e.ops, memberOp{op: "remove"})
			return nil
		}
		ids, err := scimMemberValues(v)
		if err != nil {
			return fmt.Errorf("members: %w", err)
		}
		if ids == nil {
			ids = []string{}
		}
		e.ops = append(e.ops, memberOp{op: op, ids: ids})
		return nil
	case strings.HasPrefix(lower, "members["):
		id, err := parseMemberPath(path)
		if err != nil {
			return err
		}
		if op != "remove" {
			return fmt.Errorf("path %q: only remove takes a filtered members path; add members with path \"members\"", path)
		}
		e.ops = append(e.ops, memberOp{op: "remove", ids: []string{id}})
		return nil
	}
	return nil // an attribute latch does not keep (externalId, id, schemas)
}

// scimMemberValues reads a members value: an array of {value}, or one.
func scimMemberValues(v json.RawMessage) ([]string, error) {
	var ms []scimMember
	if err := json.Unmarshal(v, &ms); err != nil {
		var m scimMember
		if json.Unmarshal(v, &m) != nil {
			return nil, errors.New(`want an array of {"value": "USER ID"}`)
		}
		ms = []scimMember{m}
	}
	if err := checkSCIMMembers(ms); err != nil {
		return nil, err
	}
	return memberIDs(ms), nil
}

// parseMemberPath reads the path members[value eq "ID"] and returns ID.
func parseMemberPath(path string) (string, error) {
	inner, ok := strings.CutSuffix(strings.TrimSpace(path[len("members["):]), "]")
	if !ok {
		return "", fmt.Errorf("path %q: want members[value eq \"ID\"]", path)
	}
	attr, id, err := parseSCIMFilterOf(inner, "value")
	if err != nil || attr == "" {
		return "", fmt.Errorf("path %q: want members[value eq \"ID\"]", path)
	}
	if id == "" {
		return "", fmt.Errorf("path %q: the member's id is empty", path)
	}
	return id, checkText("member", id, 255)
}

func (a *api) scimGroupRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /scim/v2/Groups", a.scimGroupList)
	m.HandleFunc("POST /scim/v2/Groups", a.scimGroupCreate)
	m.HandleFunc("GET /scim/v2/Groups/{id}", a.scimGroupGet)
	m.HandleFunc("PUT /scim/v2/Groups/{id}", a.scimGroupReplace)
	m.HandleFunc("PATCH /scim/v2/Groups/{id}", a.scimGroupPatch)
	m.HandleFunc("DELETE /scim/v2/Groups/{id}", a.scimGroupDelete)
}

// scimGroupState is a SCIM group as the change log shows it: its name
// and its members' ids.
func scimGroupState(name string) recordState {
	return func(src records) (any, error) {
		if _, err := src.SCIMGroup(name); err != nil {
			return absent(struct{}{}, err)
		}
		ms, err := src.SCIMMembers(name)
		if err != nil {
			return nil, err
		}
		holders := []string{}
		for _, m := range ms {
			holders = append(holders, m.Holder)
		}
		return map[string]any{"group": name, "members": holders}, nil
	}
}

// scimGroupOf is group name as SCIM shows it, with its members unless
// bare.
func (a *api) scimGroupOf(g site.SCIMGroup, bare bool) (scimGroup, error) {
	out := scimGroup{Schemas: []string{scimGroupSchema}, ID: g.Name, DisplayName: g.Name,
		Meta: &scimMeta{ResourceType: "Group", Location: "/scim/v2/Groups/" + g.Name}}
	if bare {
		return out, nil
	}
	ms, err := a.db.SCIMMembers(g.Name)
	if err != nil {
		return out, err
	}
	for _, m := range ms {
		sm := scimMember{Value: m.Holder, Ref: "/scim/v2/Users/" + m.Holder, Type: "User"}
		if h, err := a.db.Holder(m.Holder); err == nil {
			sm.Display = h.Name
		}
		out.Members = append(out.Members, sm)
	}
	return out, nil
}

// scimGroup returns the SCIM group id, or a not-found error naming it.
func (a *api) scimGroup(id string) (site.SCIMGroup, error) {
	g, err := a.db.SCIMGroup(id)
	if errors.Is(err, site.ErrNotFound) {
		return g, fmt.Errorf("group %q: %w", id, site.ErrNotFound)
	}
	return g, err
}

func (a *api) scimGroupList(w http.ResponseWriter, r *http.Request) {
	get, start, count, ok := a.scimListQuery(w, r)
	if !ok {
		return
	}
	bare := strings.EqualFold(get("excludedAttributes"), "members")
	var gs []site.SCIMGroup
	if f := get("filter"); f != "" {
		_, name, err := parseSCIMFilterOf(f, "displayName")
		if err != nil {
			a.scimFail(w, r, http.StatusBadRequest, "invalidFilter", err)
			return
		}
		g, err := a.db.SCIMGroup(name)
		switch {
		case err == nil:
			gs = append(gs, g)
		case !errors.Is(err, site.ErrNotFound):
			a.scimFailErr(w, r, err)
			return
		}
	} else {
		var err error
		if gs, err = a.db.SCIMGroups(); err != nil {
			a.scimFailErr(w, r, err)
			return
		}
	}
	total := len(gs)
	page := []scimGroup{}
	for _, g := range gs[min(start-1, total):min(start-1+count, total)] {
		sg, err := a.scimGroupOf(g, bare)
		if err != nil {
			a.scimFailErr(w, r, err)
			return
		}
		page = append(page, sg)
	}
	writeSCIMList(w, total, start, page)
}

func (a *api) scimGroupGet(w http.ResponseWriter, r *http.Request) {
	g, err := a.scimGroup(r.PathValue("id"))
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.answerSCIMGroup(w, r, http.StatusOK, g.Name)
}

func (a *api) answerSCIMGroup(w http.ResponseWriter, r *http.Request, code int, name string) {
	g, err := a.scimGroup(name)
	var sg scimGroup
	if err == nil {
		sg, err = a.scimGroupOf(g, false)
	}
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	writeSCIM(w, code, sg)
}

func (a *api) scimGroupCreate(w http.ResponseWriter, r *http.Request) {
	g, ok := scimBody(a, w, r, decodeSCIMGroup)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "scim group "+g.DisplayName, scimGroupState(g.DisplayName), "")
	if _, err := a.db.SCIMGroup(g.DisplayName); err == nil {
		a.scimFail(w, r, http.StatusConflict, "uniqueness", fmt.Errorf("group %q: %w", g.DisplayName, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.scimFailErr(w, r, err)
		return
	}
	if _, err := a.db.Door(g.DisplayName); err == nil {
		a.scimFail(w, r, http.StatusBadRequest, "invalidValue",
			fmt.Errorf("displayName %q is a door's id: a card listing it would open that door; name the group otherwise", g.DisplayName))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.scimFailErr(w, r, err)
		return
	}
	create := &site.SCIMGroup{Name: g.DisplayName, Created: a.now().UTC()}
	if err := a.scimGroupChange(r, g.DisplayName, create, false, memberIDs(g.Members)); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.answerSCIMGroup(w, r, http.StatusCreated, g.DisplayName)
}

// errRename refuses a change of a group's displayName.
func errRename(id, name string) error {
	return fmt.Errorf("displayName %q is not the group's id %q: a group is not renamed (its id is its name, which the identity provider holds); delete it and create the new one", name, id)
}

// scimGroupReplace is a PATCH that replaces the members, and sets the
// displayName (which must be the one it has).
func (a *api) scimGroupReplace(w http.ResponseWriter, r *http.Request) {
	a.scimGroupEdit(w, r, func(b []byte) (groupEdit, error) {
		g, err := decodeSCIMGroup(b)
		return groupEdit{name: &g.DisplayName, ops: []memberOp{{op: "replace", ids: memberIDs(g.Members)}}}, err
	})
}

func (a *api) scimGroupPatch(w http.ResponseWriter, r *http.Request) {
	a.scimGroupEdit(w, r, decodeSCIMGroupPatch)
}

// scimGroupEdit changes the members of the group of the path as decode
// reads the body, in order.
func (a *api) scimGroupEdit(w http.ResponseWriter, r *http.Request, decode func([]byte) (groupEdit, error)) {
	id := r.PathValue("id")
	a.describe(r, "scim group "+id, scimGroupState(id), "")
	e, ok := scimBody(a, w, r, decode)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.scimGroup(id); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	if e.name != nil && *e.name != id {
		a.scimFail(w, r, http.StatusBadRequest, "mutability", errRename(id, *e.name))
		return
	}
	ms, err := a.db.SCIMMembers(id)
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	var set []string
	for _, m := range ms {
		set = append(set, m.Holder)
	}
	for _, op := range e.ops {
		switch {
		case op.op == "remove" && op.ids == nil:
			set = nil
		case op.op == "remove":
			for _, h := range op.ids {
				if !slices.Contains(set, h) {
					// Removing a non-member is nothing to do, unless no
					// holder has the id: that is a mistake to name.
					if _, err := a.db.Holder(h); errors.Is(err, site.ErrNotFound) {
						a.scimFailErr(w, r, badRequest(fmt.Errorf("member %q: no such user", h)))
						return
					} else if err != nil {
						a.scimFailErr(w, r, err)
						return
					}
				}
			}
			set = slices.DeleteFunc(set, func(h string) bool { return slices.Contains(op.ids, h) })
		case op.op == "replace":
			set = slices.Clone(op.ids)
		default: // add
			for _, h := range op.ids {
				if !slices.Contains(set, h) {
					set = append(set, h)
				}
			}
		}
	}
	if err := a.scimGroupChange(r, id, nil, false, set); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.answerSCIMGroup(w, r, http.StatusOK, id)
}

func (a *api) scimGroupDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "scim group "+id, scimGroupState(id), "")
	if _, err := a.scimGroup(id); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	if err := a.scimGroupChange(r, id, nil, true, nil); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.log.Info("SCIM group deleted", "group", id)
	w.WriteHeader(http.StatusNoContent)
}

// scimGroupChange commits what makes group g have the members want
// (holder ids), created first when create is set, deleted after when
// del is: the cards of a member added get the door group g, those of a
// member removed lose it where the membership added it. It is one change:
// one commit of every affected card with the memberships, and the
// request's change-log entry, whose detail names the members added and
// removed. A member added who is no user is refused before anything is
// applied. The caller holds a.mu and described the change.
func (a *api) scimGroupChange(r *http.Request, g string, create *site.SCIMGroup, del bool, want []string) error {
	cur, err := a.db.SCIMMembers(g)
	if err != nil {
		return err
	}
	ch := site.SCIMChange{Group: create}
	if del {
		ch.Delete = g
	}
	var ops []store.Op
	var added, removed []string
	for _, h := range want {
		if slices.ContainsFunc(cur, func(m site.SCIMMember) bool { return m.Holder == h }) ||
			slices.ContainsFunc(ch.Put, func(m site.SCIMMember) bool { return m.Holder == h }) {
			continue
		}
		if _, err := a.scimHolder(h); errors.Is(err, site.ErrNotFound) {
			return badRequest(fmt.Errorf("member %q: no such user", h))
		} else if err != nil {
			return err
		}
		m := site.SCIMMember{Group: g, Holder: h}
		uids, err := a.db.CardsOf(h)
		if err != nil {
			return err
		}
		for _, uid := range uids {
			c, err := a.db.Card(uid)
			if err != nil {
				return err
			}
			if slices.Contains(c.Doors, g) {
				continue // there already, by hand: not the membership's
			}
			c.Doors = append(slices.Clone(c.Doors), g)
			ops = append(ops, store.Op{Kind: store.OpUpsertCard, Card: &c})
			m.Added = append(m.Added, uid)
		}
		ch.Put = append(ch.Put, m)
		added = append(added, h)
	}
	for _, m := range cur {
		if slices.Contains(want, m.Holder) {
			continue
		}
		if !del {
			ch.Remove = append(ch.Remove, site.SCIMMember{Group: g, Holder: m.Holder})
		}
		removed = append(removed, m.Holder)
		for _, uid := range m.Added {
			c, err := a.db.Card(uid)
			if errors.Is(err, site.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if c.HolderID != m.Holder || !slices.Contains(c.Doors, g) {
				continue // given to another holder since, or taken off by hand
			}
			c.Doors = slices.DeleteFunc(slices.Clone(c.Doors), func(d string) bool { return d == g })
			ops = append(ops, store.Op{Kind: store.OpUpsertCard, Card: &c})
		}
	}
	rec := a.recording(r)
	if rec != nil {
		rec.Entry.Detail = membersDetail(added, removed)
	}
	if create == nil && !del && len(ch.Put) == 0 && len(ch.Remove) == 0 {
		return nil // nothing changes; the entry says so when the request ends
	}
	if len(ops) == 0 {
		return a.dbFor(r).ChangeSCIM(ch)
	}
	if rec == nil {
		return errors.New("scim group change: no change-log entry to record it")
	}
	if err := rec.ChangingSCIM(ch); err != nil {
		return err
	}
	res, err := a.commitOps(r, ops...)
	if err != nil {
		return err
	}
	a.log.Info("SCIM group change committed", "seq", res.Seq, "group", g, "added", len(added), "removed", len(removed), "cards", len(ops))
	return nil
}

// membersDetail names the members a change added and removed, the first
// 50 of each.
func membersDetail(added, removed []string) string {
	list := func(ids []string) string {
		if len(ids) > 50 {
			return strings.Join(ids[:50], ", ") + fmt.Sprintf(" and %d more", len(ids)-50)
		}
		return strings.Join(ids, ", ")
	}
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "members added: "+list(added))
	}
	if len(removed) > 0 {
		parts = append(parts, "members removed: "+list(removed))
	}
	return strings.Join(parts, "; ")
}

// scimGroupsOnNewCards gives each card ops add to a holder (a card new to
// them) the door groups of the holder's SCIM groups, and records the
// card in those memberships in the change's own transaction, so that
// ending a membership takes the group off it again. A card that replaces
// one the membership gave the group to (revoked or deleted in the same
// change) and lists the group already counts as given too. It is the one
// place every card-creating path (card add, enrol, replace, import)
// passes, through commitOps.
func (a *api) scimGroupsOnNewCards(r *http.Request, ops []store.Op) error {
	if gs, err := a.db.SCIMGroups(); err != nil || len(gs) == 0 {
		return err
	}
	var gone [][]byte // cards the change revokes or deletes
	for _, op := range ops {
		if op.Kind == store.OpRevokeCard || op.Kind == store.OpDeleteCard {
			gone = append(gone, op.UID)
		}
	}
	var put []site.SCIMMember
	for i := range ops {
		op := &ops[i]
		if op.Kind != store.OpUpsertCard || op.Card == nil {
			continue
		}
		old, err := a.db.Card(op.Card.UID)
		if err == nil && old.HolderID == op.Card.HolderID {
			continue // not new to its holder
		} else if err != nil && !errors.Is(err, site.ErrNotFound) {
			return err
		}
		ms, err := a.db.SCIMGroupsOf(op.Card.HolderID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if slices.Contains(op.Card.Doors, m.Group) {
				replaces := slices.ContainsFunc(m.Added, func(u []byte) bool {
					return slices.ContainsFunc(gone, func(g []byte) bool { return string(g) == string(u) })
				})
				if !replaces {
					continue // put there by hand
				}
			} else {
				c := *op.Card
				c.Doors = append(slices.Clone(c.Doors), m.Group)
				op.Card = &c
			}
			j := slices.IndexFunc(put, func(p site.SCIMMember) bool { return p.Group == m.Group && p.Holder == m.Holder })
			if j < 0 {
				m.Added = slices.Clone(m.Added)
				put = append(put, m)
				j = len(put) - 1
			}
			put[j].Added = append(put[j].Added, op.Card.UID)
		}
	}
	if len(put) == 0 {
		return nil
	}
	rec := a.recording(r)
	if rec == nil {
		return errors.New("a card of a SCIM group's member: no change-log entry to record it")
	}
	return rec.ChangingSCIM(site.SCIMChange{Put: put})
}
