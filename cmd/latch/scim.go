package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// SCIM 2.0 (RFC 7643, RFC 7644), the subset an identity provider (Okta,
// Entra ID) needs to keep holders in step with its users:
//
//	GET    /scim/v2/ServiceProviderConfig
//	GET    /scim/v2/Schemas, /scim/v2/Schemas/{id}          (scimschemas.go)
//	GET    /scim/v2/ResourceTypes, /scim/v2/ResourceTypes/{id}
//	       /scim/v2/Groups…                                 (scimgroups.go)
//	GET    /scim/v2/Users?filter=userName eq "ID"&startIndex=&count=
//	POST   /scim/v2/Users          a user → the holder userName, 201
//	GET    /scim/v2/Users/{id}
//	PUT    /scim/v2/Users/{id}     replaces name and active
//	PATCH  /scim/v2/Users/{id}     replace/add of active, displayName, name.*
//	DELETE /scim/v2/Users/{id}     the holder is revoked, not removed, 204
//
// userName (or externalId, when there is no userName) is the holder id
// and the SCIM id; name.formatted (or givenName familyName, or
// displayName) is the holder's name. active=false revokes the holder, so
// every card of theirs is refused at the doors from their next sync;
// active=true reinstates. A DELETE revokes the holder with a reason that
// marks it deleted: their cards and history stay, SCIM answers 404 for
// them, and a new POST of the same userName reinstates them. A user's
// groups (read-only) are the SCIM groups the holder is a member of. A
// change is one commit of the allowlist and one entry of the change log.
//
// On the console's address these routes need an admin (an API token, for
// an identity provider). Written by hand: the subset is small, and the
// routes stay patterns of the API's mux, each with its own change-log
// operation and OpenAPI entry.

// SCIM schema and message URNs.
const (
	scimUserSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimPatchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	scimErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
	scimSPCSchema   = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	scimContentType = "application/scim+json"
)

// Revocation reasons SCIM writes: a deactivated user, a deleted one.
const (
	scimInactive = "scim: deactivated by the identity provider"
	scimDeleted  = "scim: deleted in the identity provider"
)

// scimName is a user's name.
type scimName struct {
	Formatted  string `json:"formatted,omitempty"`
	GivenName  string `json:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty"`
}

// scimUser is the User resource as latch reads and writes it; other
// attributes an identity provider sends (emails, phone numbers…) are
// ignored, and so are groups, which latch shows and does not read.
type scimUser struct {
	Schemas     []string     `json:"schemas"`
	ID          string       `json:"id,omitempty"`
	ExternalID  string       `json:"externalId,omitempty"`
	UserName    string       `json:"userName"`
	Name        *scimName    `json:"name,omitempty"`
	DisplayName string       `json:"displayName,omitempty"`
	Active      *bool        `json:"active,omitempty"`
	Groups      []scimMember `json:"groups,omitempty"`
	Meta        *scimMeta    `json:"meta,omitempty"`
}

type scimMeta struct {
	ResourceType string `json:"resourceType"`
	Location     string `json:"location"`
}

// holderName is the name a user gives its holder.
func (u *scimUser) holderName() string {
	if u.Name != nil {
		if u.Name.Formatted != "" {
			return u.Name.Formatted
		}
		if n := strings.TrimSpace(u.Name.GivenName + " " + u.Name.FamilyName); n != "" {
			return n
		}
	}
	return u.DisplayName
}

// scimError is an error answer: SCIM's fields, and the API's error.
type scimError struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail"`
	Error    string   `json:"error"`
}

// maxSCIMBody bounds a SCIM request: a user with many attributes.
const maxSCIMBody = 64 << 10

// decodeSCIMUser reads a User resource.
func decodeSCIMUser(b []byte) (scimUser, error) {
	var u scimUser
	if len(b) > maxSCIMBody {
		return u, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(b), maxSCIMBody)
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return u, fmt.Errorf("user: %w", err)
	}
	if u.UserName == "" {
		u.UserName = u.ExternalID
	}
	if u.UserName == "" {
		return u, errors.New("userName is missing")
	}
	if err := checkText("userName", u.UserName, 255); err != nil {
		return u, err
	}
	return u, checkText("name", u.holderName(), 255)
}

// scimPatch is a PatchOp request.
type scimPatch struct {
	Schemas    []string `json:"schemas"`
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path,omitempty"`
		Value json.RawMessage `json:"value"`
	} `json:"Operations"`
}

// readSCIMPatch reads a PatchOp of 1 to 64 operations.
func readSCIMPatch(b []byte) (scimPatch, error) {
	var p scimPatch
	if len(b) > maxSCIMBody {
		return p, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(b), maxSCIMBody)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("patch: %w", err)
	}
	if len(p.Operations) == 0 || len(p.Operations) > 64 {
		return p, fmt.Errorf("patch: %d operations: want 1 to 64", len(p.Operations))
	}
	return p, nil
}

// patchEdit is what a PatchOp sets: nil, left as is.
type patchEdit struct {
	active *bool
	name   *string
}

// decodeSCIMPatch reads a PatchOp: replace or add of active, displayName
// and name (name.formatted, name.givenName, name.familyName), by path or
// as an object without one (Okta, Entra ID). active may be a string
// ("False"), as Entra ID sends it.
func decodeSCIMPatch(b []byte) (patchEdit, error) {
	var e patchEdit
	p, err := readSCIMPatch(b)
	if err != nil {
		return e, err
	}
	var given, family *string
	for i, op := range p.Operations {
		if o := strings.ToLower(op.Op); o != "replace" && o != "add" {
			return e, fmt.Errorf("operation %d: op %q: only replace and add are supported", i+1, op.Op)
		}
		vals := map[string]json.RawMessage{}
		if op.Path == "" {
			if err := json.Unmarshal(op.Value, &vals); err != nil {
				return e, fmt.Errorf("operation %d: a value without a path must be an object: %w", i+1, err)
			}
			if n, ok := vals["name"]; ok {
				var sub map[string]json.RawMessage
				if err := json.Unmarshal(n, &sub); err != nil {
					return e, fmt.Errorf("operation %d: name: %w", i+1, err)
				}
				delete(vals, "name")
				for k, v := range sub {
					vals["name."+k] = v
				}
			}
		} else {
			vals[op.Path] = op.Value
		}
		for path, v := range vals {
			var err error
			switch strings.ToLower(path) {
			case "active":
				var a bool
				a, err = scimBool(v)
				e.active = &a
			case "displayname", "name.formatted":
				e.name, err = scimString(v)
			case "name.givenname":
				given, err = scimString(v)
			case "name.familyname":
				family, err = scimString(v)
			default:
				continue // an attribute latch does not keep
			}
			if err != nil {
				return e, fmt.Errorf("operation %d: %s: %w", i+1, path, err)
			}
		}
	}
	if e.name == nil && (given != nil || family != nil) {
		n := strings.TrimSpace(deref(given) + " " + deref(family))
		e.name = &n
	}
	if e.name != nil {
		if err := checkText("name", *e.name, 255); err != nil {
			return e, err
		}
	}
	return e, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func scimString(v json.RawMessage) (*string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, errors.New("want a string")
	}
	return &s, nil
}

func scimBool(v json.RawMessage) (bool, error) {
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if b, err := strconv.ParseBool(strings.ToLower(s)); err == nil {
			return b, nil
		}
	}
	return false, errors.New("want true or false")
}

// parseSCIMFilter reads the one filter latch answers of users: userName
// eq "ID" (or externalId eq "ID"), attribute and operator in any case.
func parseSCIMFilter(f string) (string, error) {
	_, v, err := parseSCIMFilterOf(f, "userName", "externalId")
	return v, err
}

// parseSCIMFilterOf reads a filter ATTR eq "VALUE", ATTR one of attrs
// (in any case, as is the operator), and returns ATTR as attrs spells it
// and VALUE.
func parseSCIMFilterOf(f string, attrs ...string) (string, string, error) {
	attr, rest, ok := strings.Cut(strings.TrimSpace(f), " ")
	i := slices.IndexFunc(attrs, func(a string) bool { return strings.EqualFold(a, attr) })
	if !ok || i < 0 {
		return "", "", fmt.Errorf("filter %q: only %s eq \"…\" is supported", f, attrs[0])
	}
	op, val, ok := strings.Cut(strings.TrimSpace(rest), " ")
	if !ok || !strings.EqualFold(op, "eq") {
		return "", "", fmt.Errorf("filter %q: only the eq operator is supported", f)
	}
	var s string
	if err := json.Unmarshal([]byte(strings.TrimSpace(val)), &s); err != nil {
		return "", "", fmt.Errorf("filter %q: the value must be a quoted string", f)
	}
	return attrs[i], s, nil
}

func (a *api) scimRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /scim/v2/ServiceProviderConfig", a.scimConfig)
	m.HandleFunc("GET /scim/v2/Users", a.scimList)
	m.HandleFunc("POST /scim/v2/Users", a.scimCreate)
	m.HandleFunc("GET /scim/v2/Users/{id}", a.scimGet)
	m.HandleFunc("PUT /scim/v2/Users/{id}", a.scimReplace)
	m.HandleFunc("PATCH /scim/v2/Users/{id}", a.scimPatch)
	m.HandleFunc("DELETE /scim/v2/Users/{id}", a.scimDelete)
}

func writeSCIM(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", scimContentType)
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// scimFail answers an error in SCIM's form.
func (a *api) scimFail(w http.ResponseWriter, r *http.Request, code int, scimType string, err error) {
	msg := strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")
	if code >= 500 {
		a.log.Error("SCIM request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		a.log.Info("SCIM request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeSCIM(w, code, scimError{Schemas: []string{scimErrorSchema}, Status: strconv.Itoa(code), ScimType: scimType, Detail: msg, Error: msg})
}

// scimFailErr answers err with its status; a 400 is an invalidValue.
func (a *api) scimFailErr(w http.ResponseWriter, r *http.Request, err error) {
	code, typ := status(err), ""
	if code == http.StatusBadRequest {
		typ = "invalidValue"
	}
	a.scimFail(w, r, code, typ, err)
}

func (a *api) scimConfig(w http.ResponseWriter, r *http.Request) {
	no := map[string]bool{"supported": false}
	writeSCIM(w, http.StatusOK, map[string]any{
		"schemas": []string{scimSPCSchema}, "patch": map[string]bool{"supported": true},
		"bulk":   map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter": map[string]any{"supported": true, "maxResults": scimMaxResults}, "changePassword": no, "sort": no, "etag": no,
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "API token",
			"description": "Authorization: Bearer and a latch API token with the admin role (latch token create)"}},
		"meta": scimMeta{ResourceType: "ServiceProviderConfig", Location: "/scim/v2/ServiceProviderConfig"},
	})
}

// scimHolder is a holder as SCIM sees it: deleted ones are not there.
type scimHolder struct {
	h       store.Holder
	revoked string // the revocation's reason, "" when in force
}

func (a *api) scimHolder(id string) (scimHolder, error) {
	h, err := a.db.Holder(id)
	if err != nil {
		if errors.Is(err, site.ErrNotFound) {
			return scimHolder{}, fmt.Errorf("user %q: %w", id, site.ErrNotFound)
		}
		return scimHolder{}, err
	}
	rev, err := revocation(a.db.HolderRevoked(id))
	if err != nil {
		return scimHolder{}, err
	}
	if rev == scimDeleted {
		return scimHolder{h: h, revoked: rev}, fmt.Errorf("user %q: %w", id, site.ErrNotFound)
	}
	return scimHolder{h: h, revoked: rev}, nil
}

// scimUserOf is s as SCIM shows it, with its groups.
func (a *api) scimUserOf(s scimHolder) (scimUser, error) {
	u := s.user()
	ms, err := a.db.SCIMGroupsOf(s.h.ID)
	for _, m := range ms {
		u.Groups = append(u.Groups, scimMember{Value: m.Group, Display: m.Group, Ref: "/scim/v2/Groups/" + m.Group, Type: "direct"})
	}
	return u, err
}

func (s scimHolder) user() scimUser {
	active := s.revoked == ""
	u := scimUser{Schemas: []string{scimUserSchema}, ID: s.h.ID, UserName: s.h.ID, DisplayName: s.h.Name, Active: &active,
		Meta: &scimMeta{ResourceType: "User", Location: "/scim/v2/Users/" + s.h.ID}}
	if s.h.Name != "" {
		u.Name = &scimName{Formatted: s.h.Name}
	}
	return u
}

// scimListQuery reads a list's query: filter, startIndex (from 1),
// count (at most scimMaxResults), attributes and excludedAttributes. It
// answers the error and returns false when it cannot.
func (a *api) scimListQuery(w http.ResponseWriter, r *http.Request) (get func(string) string, start, count int, ok bool) {
	get, err := queryValues(r.URL.Query(), "filter", "startIndex", "count", "attributes", "excludedAttributes")
	if err != nil {
		a.scimFail(w, r, http.StatusBadRequest, "invalidValue", err)
		return nil, 0, 0, false
	}
	start, count = 1, 100
	for _, p := range []struct {
		k string
		v *int
	}{{"startIndex", &start}, {"count", &count}} {
		if s := get(p.k); s != "" {
			if *p.v, err = strconv.Atoi(s); err != nil || *p.v < 0 {
				a.scimFail(w, r, http.StatusBadRequest, "invalidValue", fmt.Errorf("%s %q: want a number", p.k, s))
				return nil, 0, 0, false
			}
		}
	}
	return get, max(start, 1), min(count, scimMaxResults), true
}

// scimMaxResults is the most resources one list answers.
const scimMaxResults = 1000

// writeSCIMList answers a ListResponse: page, of total resources, from
// start.
func writeSCIMList[T any](w http.ResponseWriter, total, start int, page []T) {
	if page == nil {
		page = []T{}
	}
	writeSCIM(w, http.StatusOK, map[string]any{"schemas": []string{scimListSchema}, "totalResults": total,
		"startIndex": start, "itemsPerPage": len(page), "Resources": page})
}

func (a *api) scimList(w http.ResponseWriter, r *http.Request) {
	get, start, count, ok := a.scimListQuery(w, r)
	if !ok {
		return
	}
	var users []scimHolder
	if f := get("filter"); f != "" {
		id, err := parseSCIMFilter(f)
		if err != nil {
			a.scimFail(w, r, http.StatusBadRequest, "invalidFilter", err)
			return
		}
		s, err := a.scimHolder(id)
		switch {
		case err == nil:
			users = append(users, s)
		case !errors.Is(err, site.ErrNotFound):
			a.scimFailErr(w, r, err)
			return
		}
	} else {
		hs, err := a.db.ListHolders("", 0)
		if err != nil {
			a.scimFailErr(w, r, err)
			return
		}
		for _, h := range hs {
			rev, err := revocation(a.db.HolderRevoked(h.ID))
			if err != nil {
				a.scimFailErr(w, r, err)
				return
			}
			if rev != scimDeleted {
				users = append(users, scimHolder{h: h, revoked: rev})
			}
		}
	}
	total := len(users)
	var page []scimUser
	for _, s := range users[min(start-1, total):min(start-1+count, total)] {
		u, err := a.scimUserOf(s)
		if err != nil {
			a.scimFailErr(w, r, err)
			return
		}
		page = append(page, u)
	}
	writeSCIMList(w, total, start, page)
}

func (a *api) scimGet(w http.ResponseWriter, r *http.Request) {
	a.answerSCIMUser(w, r, http.StatusOK, r.PathValue("id"))
}

// answerSCIMUser answers with the user id.
func (a *api) answerSCIMUser(w http.ResponseWriter, r *http.Request, code int, id string) {
	s, err := a.scimHolder(id)
	var u scimUser
	if err == nil {
		u, err = a.scimUserOf(s)
	}
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	writeSCIM(w, code, u)
}

// scimApply commits what makes holder id have name (nil: as is) and be
// active or not (nil: as is), as one change, and answers with the user.
// The caller holds a.mu and described the change.
func (a *api) scimApply(w http.ResponseWriter, r *http.Request, code int, id string, exists bool, cur scimHolder, name *string, active *bool) {
	var ops []store.Op
	h := cur.h
	if !exists {
		h = store.Holder{ID: id}
	}
	if (name != nil && *name != h.Name) || !exists {
		if name != nil {
			h.Name = *name
		}
		ops = append(ops, store.Op{Kind: store.OpUpsertHolder, Holder: &h})
	}
	// SCIM lifts only the revocations it made: a card lost or a holder
	// revoked by an admin stays revoked whatever the provider says.
	ours := cur.revoked == "" || strings.HasPrefix(cur.revoked, "scim: ")
	want := cur.revoked == "" || cur.revoked == scimDeleted // a deleted user created again is active
	if active != nil {
		want = *active
	}
	switch {
	case !want && ours && cur.revoked != scimInactive:
		ops = append(ops, store.Op{Kind: store.OpRevokeHolder, HolderID: id, Reason: scimInactive})
	case want && ours && cur.revoked != "":
		ops = append(ops, store.Op{Kind: store.OpReinstateHolder, HolderID: id})
	}
	if len(ops) > 0 {
		res, err := a.commitOps(r, ops...)
		if err != nil {
			a.scimFailErr(w, r, err)
			return
		}
		a.log.Info("SCIM change committed", "seq", res.Seq, "holder", id, "ops", len(ops))
	}
	a.answerSCIMUser(w, r, code, id)
}

// scimBody reads and decodes a SCIM request's body; it answers the error
// and returns false when it cannot.
func scimBody[T any](a *api, w http.ResponseWriter, r *http.Request, decode func([]byte) (T, error)) (T, bool) {
	var zero T
	b, err := body(w, r)
	if err != nil {
		a.scimFailErr(w, r, err)
		return zero, false
	}
	v, err := decode(b)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		a.scimFail(w, r, code, "invalidValue", err)
		return zero, false
	}
	return v, true
}

func (a *api) scimCreate(w http.ResponseWriter, r *http.Request) {
	u, ok := scimBody(a, w, r, decodeSCIMUser)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "holder "+u.UserName, holderState(u.UserName), "")
	cur, err := a.scimHolder(u.UserName)
	exists := err == nil || cur.revoked == scimDeleted
	switch {
	case err == nil:
		a.scimFail(w, r, http.StatusConflict, "uniqueness", fmt.Errorf("user %q: %w", u.UserName, errExists))
		return
	case !errors.Is(err, site.ErrNotFound):
		a.scimFailErr(w, r, err)
		return
	}
	name := u.holderName()
	active := u.Active == nil || *u.Active
	a.scimApply(w, r, http.StatusCreated, u.UserName, exists, cur, &name, &active)
}

func (a *api) scimReplace(w http.ResponseWriter, r *http.Request) {
	a.scimEdit(w, r, func(id string, b []byte) (patchEdit, error) {
		u, err := decodeSCIMUser(b)
		if err == nil && u.UserName != id {
			err = fmt.Errorf("userName %q is not the user's id %q: a holder id does not change", u.UserName, id)
		}
		name := u.holderName()
		active := u.Active == nil || *u.Active
		return patchEdit{name: &name, active: &active}, err
	})
}

func (a *api) scimPatch(w http.ResponseWriter, r *http.Request) {
	a.scimEdit(w, r, func(_ string, b []byte) (patchEdit, error) { return decodeSCIMPatch(b) })
}

// scimEdit changes the user of the path as decode reads the body.
func (a *api) scimEdit(w http.ResponseWriter, r *http.Request, decode func(id string, b []byte) (patchEdit, error)) {
	id := r.PathValue("id")
	a.describe(r, "holder "+id, holderState(id), "")
	e, ok := scimBody(a, w, r, func(b []byte) (patchEdit, error) { return decode(id, b) })
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, err := a.scimHolder(id)
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.scimApply(w, r, http.StatusOK, id, true, cur, e.name, e.active)
}

// scimDelete revokes the holder as deleted: their cards are refused, and
// they and their history stay.
func (a *api) scimDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "holder "+id, holderState(id), scimDeleted)
	if _, err := a.scimHolder(id); err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	res, err := a.commitOps(r, store.Op{Kind: store.OpRevokeHolder, HolderID: id, Reason: scimDeleted})
	if err != nil {
		a.scimFailErr(w, r, err)
		return
	}
	a.log.Info("SCIM user deleted: holder revoked", "seq", res.Seq, "holder", id)
	w.WriteHeader(http.StatusNoContent)
}
