package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The API. Every path is under /v1; bodies are JSON both ways; an error is
// {"error": "..."} with a 4xx or 5xx status. A PIN travels only in a
// request body.
//
//	GET    /v1/holders              []holderView
//	POST   /v1/holders              holderAddReq → changeResult
//	GET    /v1/holders/{id}         holderView with its cards
//	DELETE /v1/holders/{id}         changeResult
//	GET    /v1/cards                []cardView
//	POST   /v1/cards                cardAddReq → changeResult
//	GET    /v1/cards/{uid}          cardView
//	DELETE /v1/cards/{uid}          changeResult
//	POST   /v1/cards/{uid}/pin      pinSetReq → changeResult
//	POST   /v1/revoke               revokeReq → changeResult
//	POST   /v1/reinstate            revokeReq → changeResult
//	GET    /v1/doors                []doorView
//	GET    /v1/audit/events?door=&holder=&uid=&type=&reason=&from=&to=&limit=   []store.Event
//	GET    /v1/audit/verify?door=   []verifyView
//	GET    /v1/audit/tail?after=&n=&door=&follow=1   application/x-ndjson: an auditLine per event, in arrival order
//	GET    /v1/audit/export?format=csv|jsonl&door=&holder=&uid=&type=&reason=&from=&to=   every event selected; trailer Latch-Export-Events
//	GET    /v1/backup               the database file; trailer Latch-Backup-Bytes
//
// Every change is an entry of the change log (changelog.go).
const (
	// operatorHeader names the admin when the kernel cannot (outside
	// Linux); the service marks such a name unverified.
	operatorHeader = "Latch-Operator"
	// backupTrailer carries the size of a backup that was written whole.
	backupTrailer = "Latch-Backup-Bytes"
	// defaultAuditLimit and maxAuditLimit bound one audit query's answer.
	defaultAuditLimit = 1000
	maxAuditLimit     = 100000
)

// holderView is a holder as the API shows it: no PIN hashes.
type holderView struct {
	ID      string     `json:"id"`
	Name    string     `json:"name,omitempty"`
	Revoked string     `json:"revoked,omitempty"` // the reason, when revoked
	Cards   []cardView `json:"cards,omitempty"`   // with show
}

// cardView is a card as the API shows it: whether it has a PIN, not the
// hash.
type cardView struct {
	UID           string         `json:"uid"`
	Holder        string         `json:"holder"`
	Doors         []string       `json:"doors,omitempty"`
	ValidFrom     time.Time      `json:"valid_from,omitzero"`
	ValidUntil    time.Time      `json:"valid_until,omitzero"`
	PINSet        bool           `json:"pin_set"`
	Revoked       string         `json:"revoked,omitempty"`        // the card's revocation reason
	HolderRevoked string         `json:"holder_revoked,omitempty"` // the holder's revocation reason
	Schedule      store.Schedule `json:"schedule,omitzero"`
	Flags         store.Flags    `json:"flags,omitzero"`
}

// doorView is a door as the API shows it.
type doorView struct {
	ID         string    `json:"id"`
	Groups     []string  `json:"groups,omitempty"`
	Identity   string    `json:"identity,omitempty"` // the approved fingerprint
	Pending    string    `json:"pending,omitempty"`  // a fingerprint awaiting approval
	LastSeen   time.Time `json:"last_seen,omitzero"`
	AppliedSeq uint64    `json:"applied_seq"`
	ViewSeq    uint64    `json:"view_seq"`
	ViewOf     uint64    `json:"view_of"`
	Current    bool      `json:"current"`        // the door applied its view of the latest change
	Online     bool      `json:"online"`         // its last status said it was online
	Next       string    `json:"next,omitempty"` // the fingerprint it rotates to, awaiting approval
	State      string    `json:"state,omitempty"`
	Lockdown   bool      `json:"lockdown,omitempty"`
}

// verifyView is one door's chain check.
type verifyView struct {
	Door       string `json:"door"`
	OK         bool   `json:"ok"`
	Contiguous uint64 `json:"contiguous"`    // the last seq stored with all before it
	Seq        uint64 `json:"seq,omitempty"` // the first bad entry
	Problem    string `json:"problem,omitempty"`
	Log        string `json:"log,omitempty"`  // "changes": the site's change log, not a door's chain
	Head       string `json:"head,omitempty"` // the change log's last good hash
}

// changeResult answers a change: the ACL seq it was committed as, and the
// view seq each approved door has once it applied it.
type changeResult struct {
	Seq     uint64            `json:"seq"`
	Doors   map[string]uint64 `json:"doors,omitempty"`
	Warning string            `json:"warning,omitempty"`
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// api serves the site database, and the doors through the site's MQTT
// side.
type api struct {
	db   *site.DB
	log  *slog.Logger
	now  func() time.Time
	pins store.PINParams // the cost of PIN hashes
	// hashing bounds the PIN hashes made at once: each takes
	// pins.Memory KiB (32 MiB by default) while it runs.
	hashing chan struct{}

	site   *mqttsite.Site // every change goes through it, so that the views move
	online bool           // the site runs on a broker: changes are published
	keys   *keyFile       // the site key file, for key rotation

	// mu makes each change's read-check-commit one step, so two admins
	// cannot both add the same card or set a PIN on a card being removed.
	mu sync.Mutex

	streams streams // what following audit streams share (audit_stream.go)
	alarms  *alarmEngine
}

// handler returns the API's routes.
func (a *api) handler() http.Handler { return a.logChanges(a.mux()) }

// mux returns a mux of the API's routes.
func (a *api) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/holders", a.holderList)
	m.HandleFunc("POST /v1/holders", a.holderAdd)
	m.HandleFunc("GET /v1/holders/{id}", a.holderShow)
	m.HandleFunc("DELETE /v1/holders/{id}", a.holderRemove)
	m.HandleFunc("GET /v1/cards", a.cardList)
	m.HandleFunc("POST /v1/cards", a.cardAdd)
	m.HandleFunc("GET /v1/cards/{uid}", a.cardShow)
	m.HandleFunc("DELETE /v1/cards/{uid}", a.cardRemove)
	m.HandleFunc("POST /v1/cards/{uid}/pin", a.pinSet)
	m.HandleFunc("POST /v1/revoke", a.revoke)
	m.HandleFunc("POST /v1/reinstate", a.reinstate)
	m.HandleFunc("GET /v1/doors", a.doorList)
	m.HandleFunc("GET /v1/audit/events", a.auditQuery)
	m.HandleFunc("GET /v1/audit/verify", a.auditVerify)
	m.HandleFunc("GET /v1/audit/tail", a.auditTail)
	m.HandleFunc("GET /v1/audit/export", a.auditExport)
	m.HandleFunc("GET /v1/backup", a.backup)
	a.siteRoutes(m)
	a.userRoutes(m)
	a.accessRoutes(m)
	a.changeRoutes(m)
	a.reviewRoutes(m)
	a.tokenRoutes(m)
	a.csvRoutes(m)
	a.scimRoutes(m)
	a.scimGroupRoutes(m)
	a.scimDiscoveryRoutes(m)
	a.alarmRoutes(m)
	a.visitorRoutes(m)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return m
}

// operatorKey is the context key of the connection's operator.
type operatorKey struct{}

// connContext records who is at the other end of a connection, once per
// connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, operatorKey{}, peerUser(c))
}

// operator names who makes a change: the peer's unix user, or else the
// name the client sent, marked unverified.
func operator(r *http.Request) string {
	if u, _ := r.Context().Value(operatorKey{}).(string); u != "" {
		return u
	}
	if h := r.Header.Get(operatorHeader); h != "" && checkText("operator", h, 64) == nil {
		return h + " (unverified)"
	}
	return "unknown"
}

// status maps an error to its HTTP status.
func status(err error) int {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, site.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, site.ErrConflict), errors.Is(err, errExists):
		return http.StatusConflict
	case errors.Is(err, site.ErrInvalid), errors.Is(err, store.ErrInvalidPIN), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

var (
	// errExists is an add of what is there.
	errExists = errors.New("exists")
	// errBadRequest is a request the API refuses before the database sees it.
	errBadRequest = errors.New("bad request")
)

// badRequest marks err as the client's.
func badRequest(err error) error { return fmt.Errorf("%w: %w", errBadRequest, err) }

func (a *api) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		a.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, code, errorBody{Error: strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")})
}

func (a *api) failErr(w http.ResponseWriter, r *http.Request, err error) {
	a.fail(w, r, status(err), err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// body reads a request body of at most maxBody bytes.
func body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, fmt.Errorf("%w: limit %d bytes", errTooLarge, maxBody)
	}
	if err != nil {
		return nil, badRequest(fmt.Errorf("request body: %w", err))
	}
	return b, nil
}

// commit commits ops as the request's operator, with the request's
// change-log entry, and answers with the seq. The caller holds a.mu.
func (a *api) commit(w http.ResponseWriter, r *http.Request, code int, ops ...store.Op) {
	res, err := a.commitOps(r, ops...)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, code, res)
}

// commitOps is commit without the answer: an error when nothing was
// committed.
func (a *api) commitOps(r *http.Request, ops ...store.Op) (changeResult, error) {
	by := operator(r)
	if err := a.scimGroupsOnNewCards(r, ops); err != nil {
		return changeResult{}, err
	}
	var seq uint64
	var err error
	if a.online {
		seq, err = a.siteFor(r).Publish(r.Context(), by, ops...)
	} else {
		seq, err = a.siteFor(r).Commit(by, ops...)
	}
	if seq == 0 {
		return changeResult{}, err
	}
	res := changeResult{Seq: seq, Doors: a.viewTargets()}
	if err != nil {
		// Committed: the doors catch up through their sync requests.
		a.log.Warn("change committed, not all sent to the doors", "seq", seq, "err", err)
		res.Warning = "committed; not every door was sent it yet: " + err.Error()
	}
	a.log.Info("change committed", "seq", seq, "by", by, "op", ops[0].Kind, "ops", len(ops))
	return res, nil
}

// decodeBody reads the request body and decodes it. If either fails it
// answers with the error and returns false. The body is cleared once
// decoded, since it may hold a PIN.
func decodeBody[T any](a *api, w http.ResponseWriter, r *http.Request, decode func([]byte) (T, error)) (T, bool) {
	b, err := body(w, r)
	if err != nil {
		a.failErr(w, r, err)
		var zero T
		return zero, false
	}
	req, err := decode(b)
	clear(b)
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return req, false
	}
	return req, true
}

// views returns each item as view shows it.
func views[T, V any](items []T, view func(T) (V, error)) ([]V, error) {
	out := make([]V, 0, len(items))
	for _, it := range items {
		v, err := view(it)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// listViews answers with the items of a list, each as view shows it, or
// with err, the error of listing them.
func listViews[T, V any](a *api, w http.ResponseWriter, r *http.Request, items []T, err error, view func(T) (V, error)) {
	var out []V
	if err == nil {
		out, err = views(items, view)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// revocation returns the reason of a revocation, or "" if none.
func revocation(r store.Revocation, err error) (string, error) {
	if errors.Is(err, site.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if r.Reason == "" {
		return "revoked", nil
	}
	return r.Reason, nil
}

func (a *api) holderView(h store.Holder) (holderView, error) { return holderViewOf(a.db, h) }

func (a *api) cardView(c store.Card) (cardView, error) { return cardViewOf(a.db, c) }

func (a *api) holderList(w http.ResponseWriter, r *http.Request) {
	hs, err := a.db.ListHolders("", 0)
	listViews(a, w, r, hs, err, a.holderView)
}

func (a *api) holderAdd(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeHolderAdd)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "holder "+req.ID, holderState(req.ID), "")
	if _, err := a.db.Holder(req.ID); err == nil {
		a.failErr(w, r, fmt.Errorf("holder %q: %w", req.ID, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, err)
		return
	}
	a.commit(w, r, http.StatusCreated, store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: req.ID, Name: req.Name}})
}

// holder returns the holder named by the path, or a 404 error.
func (a *api) holder(id string) (store.Holder, error) {
	h, err := a.db.Holder(id)
	if errors.Is(err, site.ErrNotFound) {
		return h, fmt.Errorf("holder %q does not exist: %w", id, site.ErrNotFound)
	}
	return h, err
}

func (a *api) holderShow(w http.ResponseWriter, r *http.Request) {
	h, err := a.holder(r.PathValue("id"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	v, err := a.holderView(h)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	uids, err := a.db.CardsOf(h.ID)
	if err == nil {
		v.Cards, err = views(uids, func(uid []byte) (cardView, error) {
			c, err := a.db.Card(uid)
			if err != nil {
				return cardView{}, err
			}
			return a.cardView(c)
		})
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) holderRemove(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "holder "+r.PathValue("id"), holderState(r.PathValue("id")), "")
	h, err := a.holder(r.PathValue("id"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.commit(w, r, http.StatusOK, store.Op{Kind: store.OpDeleteHolder, HolderID: h.ID})
}

func (a *api) cardList(w http.ResponseWriter, r *http.Request) {
	cs, err := a.db.ListCards(nil, 0)
	listViews(a, w, r, cs, err, a.cardView)
}

func (a *api) cardAdd(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeCardAdd)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, fmt.Sprintf("card %X", req.uid), cardState(req.uid), "holder "+req.Holder)
	if _, err := a.holder(req.Holder); err != nil {
		a.failErr(w, r, err)
		return
	}
	if err := a.cardFree(req.uid); err != nil {
		a.failErr(w, r, err)
		return
	}
	c := &store.Card{UID: req.uid, HolderID: req.Holder, Doors: req.Doors, ValidFrom: req.ValidFrom.UTC(), ValidUntil: req.ValidUntil.UTC(),
		Schedule: req.Schedule, Flags: req.Flags}
	a.commit(w, r, http.StatusCreated, store.Op{Kind: store.OpUpsertCard, Card: c})
}

// card returns the card named by the path, or a 404 error.
// cardFree returns errExists when the site has a card uid.
func (a *api) cardFree(uid []byte) error {
	_, err := a.db.Card(uid)
	switch {
	case err == nil:
		return fmt.Errorf("card %X: %w", uid, errExists)
	case errors.Is(err, site.ErrNotFound):
		return nil
	}
	return err
}

func (a *api) card(s string) (store.Card, error) {
	uid, err := parseUID(s)
	if err != nil {
		return store.Card{}, badRequest(err)
	}
	c, err := a.db.Card(uid)
	if errors.Is(err, site.ErrNotFound) {
		return c, fmt.Errorf("card %X does not exist: %w", uid, site.ErrNotFound)
	}
	return c, err
}

func (a *api) cardShow(w http.ResponseWriter, r *http.Request) {
	c, err := a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	v, err := a.cardView(c)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) cardRemove(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, err := a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.describe(r, fmt.Sprintf("card %X", c.UID), cardState(c.UID), "")
	a.commit(w, r, http.StatusOK, store.Op{Kind: store.OpDeleteCard, UID: c.UID})
}

// pinSet hashes a card's new PIN at the site, so the door store's PIN
// rules (store.HashPIN: 4 to 12 digits, not part of the card's UID) are
// checked here and an admin learns at once what a door would refuse.
func (a *api) pinSet(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodePINSet)
	if !ok {
		return
	}
	c, err := a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if c.HolderID != req.Holder {
		a.failErr(w, r, badRequest(fmt.Errorf("card %X belongs to holder %q, not %q", c.UID, c.HolderID, req.Holder)))
		return
	}
	pin := []byte(req.PIN)
	hash, err := a.hashPIN(r.Context(), pin, c.UID)
	clear(pin)
	if err != nil {
		a.failErr(w, r, fmt.Errorf("PIN refused: %w", unprefix(err, "store: hash pin: ")))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Hashing took a while without the lock: the card may have changed.
	c, err = a.card(r.PathValue("uid"))
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.describe(r, fmt.Sprintf("card %X", c.UID), cardState(c.UID), "holder "+c.HolderID)
	if c.HolderID != req.Holder {
		a.failErr(w, r, badRequest(fmt.Errorf("card %X belongs to holder %q, not %q", c.UID, c.HolderID, req.Holder)))
		return
	}
	c.PINHash = hash
	a.commit(w, r, http.StatusOK, store.Op{Kind: store.OpUpsertCard, Card: &c})
}

// maxHashing is how many PIN hashes the service makes at once.
const maxHashing = 2

// hashPIN is store.HashPIN, at most maxHashing at a time: a script that
// sets a thousand PINs at once does not take a thousand times the hash's
// memory.
func (a *api) hashPIN(ctx context.Context, pin, uid []byte) (string, error) {
	release, err := a.hashSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return store.HashPIN(pin, uid, a.pins)
}

// hashSlot waits for one of the maxHashing argon2id derivations (PIN and
// password hashes, password checks) that may run at once.
func (a *api) hashSlot(ctx context.Context) (release func(), err error) {
	if a.hashing == nil {
		return func() {}, nil
	}
	select {
	case a.hashing <- struct{}{}:
		return func() { <-a.hashing }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// unprefix drops a package prefix from err's message and keeps its chain.
func unprefix(err error, prefix string) error {
	return &trimmed{msg: strings.TrimPrefix(err.Error(), prefix), err: err}
}

type trimmed struct {
	msg string
	err error
}

func (t *trimmed) Error() string { return t.msg }
func (t *trimmed) Unwrap() error { return t.err }

func (a *api) revoke(w http.ResponseWriter, r *http.Request)    { a.revocation(w, r, true) }
func (a *api) reinstate(w http.ResponseWriter, r *http.Request) { a.revocation(w, r, false) }

// revocation revokes (on) or reinstates a card or a holder. Both must
// exist, so that a typo is not a revocation of nothing; a reinstatement
// must lift a revocation in force.
func (a *api) revocation(w http.ResponseWriter, r *http.Request, on bool) {
	req, ok := decodeBody(a, w, r, func(b []byte) (revoke, error) { return decodeRevoke(b, on) })
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	tgt, state := "holder "+req.Holder, holderState(req.Holder)
	if req.uid != nil {
		tgt, state = fmt.Sprintf("card %X", req.uid), cardState(req.uid)
	}
	a.describe(r, tgt, state, req.Reason)
	var op store.Op
	var reason string
	var err error
	if req.uid != nil {
		if _, err := a.card(req.UID); err != nil {
			a.failErr(w, r, err)
			return
		}
		reason, err = revocation(a.db.Revoked(req.uid))
		op = store.Op{Kind: store.OpRevokeCard, UID: req.uid, Reason: req.Reason}
		if !on {
			op.Kind = store.OpReinstateCard
		}
	} else {
		if _, err := a.holder(req.Holder); err != nil {
			a.failErr(w, r, err)
			return
		}
		reason, err = revocation(a.db.HolderRevoked(req.Holder))
		op = store.Op{Kind: store.OpRevokeHolder, HolderID: req.Holder, Reason: req.Reason}
		if !on {
			op.Kind = store.OpReinstateHolder
		}
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if !on && reason == "" {
		a.failErr(w, r, fmt.Errorf("%s is not revoked: %w", target(req), site.ErrConflict))
		return
	}
	a.commit(w, r, http.StatusOK, op)
}

// target names what a revokeReq is about.
func target(r revoke) string {
	if r.uid != nil {
		return fmt.Sprintf("card %X", r.uid)
	}
	return fmt.Sprintf("holder %q", r.Holder)
}

func (a *api) doorList(w http.ResponseWriter, r *http.Request) {
	ds, err := a.db.ListDoors()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	listViews(a, w, r, ds, nil, func(d site.Door) (doorView, error) { return a.doorView(d), nil })
}

// auditFilter reads an audit query from the URL's query.
func auditFilter(q map[string][]string) (site.Filter, error) {
	var f site.Filter
	get, err := queryValues(q, "door", "holder", "uid", "type", "reason", "from", "to", "limit")
	if err != nil {
		return f, err
	}
	f.Door, f.Holder = get("door"), get("holder")
	f.Type, f.Reason = store.EventType(get("type")), store.Reason(get("reason"))
	if u := get("uid"); u != "" {
		uid, err := parseUID(u)
		if err != nil {
			return f, err
		}
		f.UID = fmt.Sprintf("%X", uid)
	}
	for _, t := range []struct {
		k string
		p *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := get(t.k); s != "" {
			v, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return f, fmt.Errorf("%s %q is not an RFC 3339 time", t.k, s)
			}
			*t.p = v
		}
	}
	f.Limit = defaultAuditLimit
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditLimit {
			return f, fmt.Errorf("limit %q: want 1 to %d", s, maxAuditLimit)
		}
		f.Limit = n
	}
	return f, nil
}

func (a *api) auditQuery(w http.ResponseWriter, r *http.Request) {
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	out := []store.Event{}
	for rec, err := range a.db.Query(f) {
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		out = append(out, rec.Event)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) auditVerify(w http.ResponseWriter, r *http.Request) {
	var doors []string
	if d := r.URL.Query().Get("door"); d != "" {
		if _, err := a.db.Door(d); err != nil {
			a.failErr(w, r, fmt.Errorf("door %q: %w", d, err))
			return
		}
		doors = []string{d}
	} else {
		ds, err := a.db.ListDoors()
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		for _, d := range ds {
			doors = append(doors, d.ID)
		}
	}
	out, err := views(doors, a.verifyDoor)
	if err == nil && r.URL.Query().Get("door") == "" {
		var v verifyView
		v, err = a.verifyChanges()
		out = append(out, v)
	}
	listViews(a, w, r, out, err, func(v verifyView) (verifyView, error) { return v, nil })
}

// verifyDoor checks one door's chain.
func (a *api) verifyDoor(d string) (verifyView, error) {
	p, err := a.db.Verify(d)
	if err != nil {
		return verifyView{}, err
	}
	c, err := a.db.Contiguous(d)
	if err != nil {
		return verifyView{}, err
	}
	v := verifyView{Door: d, OK: p == nil, Contiguous: c}
	if p != nil {
		v.Seq, v.Problem = p.Seq, p.What
	}
	return v, nil
}

// backup streams a consistent copy of the database. The size goes in a
// trailer once the copy is whole, so that a client can tell a copy cut
// short by a failure from a complete one.
func (a *api) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", backupTrailer)
	n, err := a.db.Backup(w)
	if err != nil {
		a.log.Error("backup failed", "bytes", n, "err", err)
		return
	}
	w.Header().Set(backupTrailer, strconv.FormatInt(n, 10))
	a.log.Info("backup written", "bytes", n, "by", operator(r))
}
