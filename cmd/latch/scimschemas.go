package main

import (
	"fmt"
	"net/http"

	"github.com/latchdoor/latch/store/site"
)

// SCIM discovery (RFC 7643 sections 6 and 7): the resource types latch
// serves and their schemas, with only the attributes latch reads or
// shows.
//
//	GET /scim/v2/Schemas, /scim/v2/Schemas/{id}
//	GET /scim/v2/ResourceTypes, /scim/v2/ResourceTypes/{id}

// Discovery schema URNs.
const (
	scimSchemaSchema       = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	scimResourceTypeSchema = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
)

// scimAttribute is an attribute's definition in a schema.
type scimAttribute struct {
	Name          string          `json:"name"`
	Type          string          `json:"type"`
	MultiValued   bool            `json:"multiValued"`
	Description   string          `json:"description"`
	Required      bool            `json:"required"`
	CaseExact     bool            `json:"caseExact"`
	Mutability    string          `json:"mutability"`
	Returned      string          `json:"returned"`
	Uniqueness    string          `json:"uniqueness"`
	SubAttributes []scimAttribute `json:"subAttributes,omitempty"`
}

// scimAttr is a single-valued string attribute of mutability mut; its
// fields are changed after as needed.
func scimAttr(name, mut, desc string) scimAttribute {
	return scimAttribute{Name: name, Type: "string", Description: desc, Mutability: mut, Returned: "default", Uniqueness: "none"}
}

// scimRef is a multi-valued reference (a group's members, a user's
// groups), each value an id of the resource type to.
func scimRef(name, mut, to, desc string) scimAttribute {
	a := scimAttr(name, mut, desc)
	a.Type, a.MultiValued = "complex", true
	value := scimAttr("value", "immutable", "the "+to+"'s id")
	ref := scimAttr("$ref", "immutable", "the URI of the "+to)
	ref.Type = "reference"
	display := scimAttr("display", "readOnly", "the "+to+"'s name")
	typ := scimAttr("type", "immutable", "its kind")
	a.SubAttributes = []scimAttribute{value, ref, display, typ}
	return a
}

// scimSchema is a Schema resource.
type scimSchema struct {
	Schemas     []string        `json:"schemas"`
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Attributes  []scimAttribute `json:"attributes"`
	Meta        scimMeta        `json:"meta"`
}

// scimResourceType is a ResourceType resource.
type scimResourceType struct {
	Schemas     []string `json:"schemas"`
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Endpoint    string   `json:"endpoint"`
	Description string   `json:"description"`
	Schema      string   `json:"schema"`
	Meta        scimMeta `json:"meta"`
}

// scimSchemas are the schemas of the resources latch serves.
func scimSchemas() []scimSchema {
	userName := scimAttr("userName", "readWrite", "the holder id, and the user's id")
	userName.Required, userName.CaseExact, userName.Uniqueness = true, true, "server"
	externalID := scimAttr("externalId", "writeOnly", "the holder id when there is no userName; not kept")
	externalID.Returned, externalID.CaseExact = "never", true
	name := scimAttr("name", "readWrite", "the holder's name: formatted, else givenName familyName")
	name.Type = "complex"
	name.SubAttributes = []scimAttribute{
		scimAttr("formatted", "readWrite", "the holder's name"),
		scimAttr("givenName", "readWrite", "with familyName, the holder's name when there is no formatted"),
		scimAttr("familyName", "readWrite", "with givenName, the holder's name when there is no formatted"),
	}
	active := scimAttr("active", "readWrite", "false: the holder is revoked, every card of theirs refused at every door")
	active.Type = "boolean"
	groups := scimRef("groups", "readOnly", "group", "the SCIM groups the holder is a member of")
	groups.Returned = "default"

	displayName := scimAttr("displayName", "immutable", "the group's id and the latch door group it gives: 1-64 of a-z 0-9 _ -, no door's id; not renamed")
	displayName.Required, displayName.CaseExact, displayName.Uniqueness = true, true, "server"
	members := scimRef("members", "readWrite", "User", "the users whose cards get the door group")

	return []scimSchema{
		{Schemas: []string{scimSchemaSchema}, ID: scimUserSchema, Name: "User", Description: "a latch holder",
			Attributes: []scimAttribute{userName, externalID, name, scimAttr("displayName", "readWrite", "the holder's name when there is no name"), active, groups},
			Meta:       scimMeta{ResourceType: "Schema", Location: "/scim/v2/Schemas/" + scimUserSchema}},
		{Schemas: []string{scimSchemaSchema}, ID: scimGroupSchema, Name: "Group", Description: "a latch door group given to its members' cards",
			Attributes: []scimAttribute{displayName, members},
			Meta:       scimMeta{ResourceType: "Schema", Location: "/scim/v2/Schemas/" + scimGroupSchema}},
	}
}

// scimResourceTypes are the resource types latch serves.
func scimResourceTypes() []scimResourceType {
	return []scimResourceType{
		{Schemas: []string{scimResourceTypeSchema}, ID: "User", Name: "User", Endpoint: "/Users", Description: "a holder", Schema: scimUserSchema,
			Meta: scimMeta{ResourceType: "ResourceType", Location: "/scim/v2/ResourceTypes/User"}},
		{Schemas: []string{scimResourceTypeSchema}, ID: "Group", Name: "Group", Endpoint: "/Groups", Description: "a door group", Schema: scimGroupSchema,
			Meta: scimMeta{ResourceType: "ResourceType", Location: "/scim/v2/ResourceTypes/Group"}},
	}
}

func (a *api) scimDiscoveryRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /scim/v2/Schemas", func(w http.ResponseWriter, r *http.Request) {
		ss := scimSchemas()
		writeSCIMList(w, len(ss), 1, ss)
	})
	m.HandleFunc("GET /scim/v2/Schemas/{id}", func(w http.ResponseWriter, r *http.Request) {
		scimFind(a, w, r, scimSchemas(), func(s scimSchema) string { return s.ID })
	})
	m.HandleFunc("GET /scim/v2/ResourceTypes", func(w http.ResponseWriter, r *http.Request) {
		ts := scimResourceTypes()
		writeSCIMList(w, len(ts), 1, ts)
	})
	m.HandleFunc("GET /scim/v2/ResourceTypes/{id}", func(w http.ResponseWriter, r *http.Request) {
		scimFind(a, w, r, scimResourceTypes(), func(t scimResourceType) string { return t.ID })
	})
}

// scimFind answers the resource of all whose id is the path's, or 404.
func scimFind[T any](a *api, w http.ResponseWriter, r *http.Request, all []T, id func(T) string) {
	for _, x := range all {
		if id(x) == r.PathValue("id") {
			writeSCIM(w, http.StatusOK, x)
			return
		}
	}
	a.scimFailErr(w, r, fmt.Errorf("%s %q: %w", r.URL.Path, r.PathValue("id"), site.ErrNotFound))
}
