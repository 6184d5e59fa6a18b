package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store/site"
)

// The doors and the site key, through the site's MQTT side:
//
//	GET    /v1/doors/{id}            doorView
//	POST   /v1/doors/{id}/approve    approveReq → doorView
//	PUT    /v1/doors/{id}/groups     groupsReq → groupsResult
//	POST   /v1/doors/{id}/unlock     unlockReq → commandResult
//	POST   /v1/doors/{id}/lockdown   lockdownReq → commandResult
//	DELETE /v1/doors/{id}/approval   doorView: the approval withdrawn
//	POST   /v1/keys/rotate           rotateReq → rotateResult
//	GET    /v1/audit/findings?after=&limit=   []site.Finding
func (a *api) siteRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/doors/{id}", a.doorShow)
	m.HandleFunc("POST /v1/doors/{id}/approve", a.doorApprove)
	m.HandleFunc("PUT /v1/doors/{id}/groups", a.doorGroups)
	m.HandleFunc("POST /v1/doors/{id}/unlock", a.doorUnlock)
	m.HandleFunc("POST /v1/doors/{id}/lockdown", a.doorLockdown)
	m.HandleFunc("POST /v1/keys/rotate", a.keysRotate)
	m.HandleFunc("GET /v1/doors/{id}/enroll", a.doorEnroll)
	m.HandleFunc("DELETE /v1/doors/{id}/approval", a.doorUnapprove)
	m.HandleFunc("GET /v1/audit/findings", a.auditFindings)
	m.HandleFunc("POST /v1/cards/{uid}/replace", a.cardReplace)
	m.HandleFunc("PATCH /v1/cards/{uid}", a.cardSet)
}

// approveReq approves the identity a door announced (or the one it
// rotates to) by its fingerprint, which the admin read at the door.
type approveReq struct {
	Fingerprint string `json:"fingerprint"`
}

// groupsReq sets a door's groups.
type groupsReq struct {
	Groups []string `json:"groups"`
}

// groupsResult is the door's view seq after its groups changed.
type groupsResult struct {
	ViewSeq uint64 `json:"view_seq"`
}

// unlockReq unlocks a door for a while.
type unlockReq struct {
	DurationMS int64 `json:"duration_ms"`
}

// lockdownReq puts a door in lockdown or takes it out.
type lockdownReq struct {
	On *bool `json:"on"`
}

// commandResult is the command sent: its id and seq, which the door's
// audit log names when it carries it out.
type commandResult struct {
	Door string `json:"door"`
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
}

// rotateReq rotates the site key.
type rotateReq struct {
	Kid          string `json:"kid,omitempty"`            // the new key's id (default: the old one's number + 1)
	RetireAfterS int64  `json:"retire_after_s,omitempty"` // how long doors still take the old key (default 1 h)
}

// rotateResult names the new key, in the form a door's trusted_keys holds.
type rotateResult struct {
	Retired  string    `json:"retired"`
	Kid      string    `json:"kid"`
	Public   string    `json:"public_key"`
	RetireAt time.Time `json:"retire_at"`
}

func decodeApprove(b []byte) (approveReq, error) {
	var r approveReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.Fingerprint == "" {
		return r, errors.New("fingerprint is missing")
	}
	return r, checkText("fingerprint", r.Fingerprint, 64)
}

func decodeGroups(b []byte) (groupsReq, error) {
	var r groupsReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if len(r.Groups) > 64 {
		return r, fmt.Errorf("%d groups, limit 64", len(r.Groups))
	}
	for _, g := range r.Groups {
		if err := mqtt.CheckID("group", g); err != nil {
			return r, err
		}
	}
	return r, nil
}

func decodeUnlock(b []byte) (unlockReq, error) {
	var r unlockReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if max := mqtt.MaxUnlockDuration.Milliseconds(); r.DurationMS < 1 || r.DurationMS > max {
		return r, fmt.Errorf("duration_ms %d: want 1 to %d", r.DurationMS, max)
	}
	return r, nil
}

func decodeLockdown(b []byte) (lockdownReq, error) {
	var r lockdownReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.On == nil {
		return r, errors.New("on is missing: true or false")
	}
	return r, nil
}

func decodeRotate(b []byte) (rotateReq, error) {
	var r rotateReq
	if len(b) == 0 {
		return r, nil
	}
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if r.Kid != "" && !kidRE.MatchString(r.Kid) {
		return r, fmt.Errorf("kid %q: want 1-64 of A-Z a-z 0-9 . _ -", r.Kid)
	}
	if r.RetireAfterS < 0 || r.RetireAfterS > 30*24*3600 {
		return r, fmt.Errorf("retire_after_s %d: want 0 to 30 days", r.RetireAfterS)
	}
	return r, nil
}

// kidRE is what a key id may be (as mqtt.NewSigner checks it).
var kidRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// doorStatus is what the API shows of a door's last status.
type doorStatus struct {
	Online    bool   `json:"online"`
	DoorState string `json:"door_state"`
	Lockdown  bool   `json:"lockdown"`
}

// doorView is a door as the API shows it.
func (a *api) doorView(d site.Door) doorView {
	v := doorView{ID: d.ID, Groups: d.Groups, LastSeen: d.LastSeen, AppliedSeq: d.AppliedSeq,
		ViewSeq: d.ViewSeq, ViewOf: d.ViewOf}
	if d.Approved != nil {
		v.Identity = d.Approved.Fingerprint
		v.ViewSeq = a.site.ViewSeq(d.ID)
		v.Current = d.AppliedSeq == v.ViewSeq
	}
	if d.Pending != nil {
		v.Pending = d.Pending.Fingerprint
	}
	if d.Next != nil {
		v.Next = d.Next.Fingerprint
	}
	var st doorStatus
	if len(d.Status) > 0 && json.Unmarshal(d.Status, &st) == nil {
		v.Online, v.State, v.Lockdown = st.Online, st.DoorState, st.Lockdown
	}
	return v
}

// viewTargets returns each approved door's view seq now: the seq a door
// has applied once it has every change made so far.
func (a *api) viewTargets() map[string]uint64 {
	ds, err := a.db.ListDoors()
	if err != nil {
		a.log.Warn("list doors", "err", err)
		return nil
	}
	out := make(map[string]uint64)
	for _, d := range ds {
		if d.Approved != nil {
			out[d.ID] = a.site.ViewSeq(d.ID)
		}
	}
	return out
}

// door returns the door the path names, or answers 404.
func (a *api) door(w http.ResponseWriter, r *http.Request) (site.Door, bool) {
	id := r.PathValue("id")
	if err := mqtt.CheckID("door", id); err != nil {
		a.failErr(w, r, badRequest(err))
		return site.Door{}, false
	}
	d, err := a.db.Door(id)
	if errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, fmt.Errorf("door %q: %w: no such door has announced itself or been set up", id, site.ErrNotFound))
		return site.Door{}, false
	}
	if err != nil {
		a.failErr(w, r, err)
		return site.Door{}, false
	}
	return d, true
}

func (a *api) doorShow(w http.ResponseWriter, r *http.Request) {
	if d, ok := a.door(w, r); ok {
		writeJSON(w, http.StatusOK, a.doorView(d))
	}
}

func (a *api) doorApprove(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeApprove)
	if !ok {
		return
	}
	d, ok := a.door(w, r)
	if !ok {
		return
	}
	a.describe(r, "door "+d.ID, doorState(d.ID), "fingerprint "+req.Fingerprint)
	var err error
	switch {
	case d.Next != nil && d.Next.Fingerprint == req.Fingerprint:
		err = a.siteFor(r).ApproveNext(d.ID, req.Fingerprint)
	default:
		err = a.siteFor(r).Approve(d.ID, req.Fingerprint)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("door approved", "door", d.ID, "fingerprint", req.Fingerprint, "by", operator(r))
	if d, ok = a.door(w, r); ok {
		writeJSON(w, http.StatusOK, a.doorView(d))
	}
}

func (a *api) doorGroups(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeGroups)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.door(w, r)
	if !ok {
		return
	}
	a.describe(r, "door "+d.ID, doorState(d.ID), "")
	seq, err := a.siteFor(r).SetGroups(r.Context(), d.ID, req.Groups, a.online)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("door groups set", "door", d.ID, "groups", req.Groups, "by", operator(r))
	writeJSON(w, http.StatusOK, groupsResult{ViewSeq: seq})
}

func (a *api) doorUnlock(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeUnlock)
	if ok {
		a.command(w, r, mqtt.Command{Action: mqtt.ActionUnlock, DurationMS: req.DurationMS})
	}
}

func (a *api) doorLockdown(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeLockdown)
	if ok {
		a.command(w, r, mqtt.Command{Action: mqtt.ActionLockdown, On: req.On})
	}
}

// command sends a signed command to the door the path names, which must
// be approved; the site must be on a broker.
func (a *api) command(w http.ResponseWriter, r *http.Request, c mqtt.Command) {
	d, ok := a.door(w, r)
	if !ok {
		return
	}
	a.describe(r, "door "+d.ID, nil, commandDetail(c))
	if d.Approved == nil {
		a.failErr(w, r, fmt.Errorf("door %s: %w: not approved (latch door approve)", d.ID, site.ErrConflict))
		return
	}
	if !a.online {
		a.failErr(w, r, fmt.Errorf("door %s: %w: latch serve runs without a broker (--broker)", d.ID, site.ErrConflict))
		return
	}
	ref, err := a.logBefore(r)
	if err != nil {
		a.failErr(w, r, fmt.Errorf("not sent: %w", err))
		return
	}
	cmd, err := a.site.Command(r.Context(), d.ID, c)
	a.logOutcome(r, ref, commandResult{Door: d.ID, ID: cmd.ID, Seq: cmd.Seq}, err)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("command sent", "door", d.ID, "cmd", c.Action, "id", cmd.ID, "seq", cmd.Seq, "by", operator(r))
	writeJSON(w, http.StatusOK, commandResult{Door: d.ID, ID: cmd.ID, Seq: cmd.Seq})
}

func (a *api) keysRotate(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeRotate)
	if !ok {
		return
	}
	a.describe(r, "site key", a.keyState, "")
	if !a.online {
		a.failErr(w, r, badRequest(errors.New("latch serve runs without a broker (--broker): doors would not learn the new key")))
		return
	}
	ref, err := a.logBefore(r)
	if err != nil {
		a.failErr(w, r, fmt.Errorf("not rotated: %w", err))
		return
	}
	retire := time.Hour
	if req.RetireAfterS > 0 {
		retire = time.Duration(req.RetireAfterS) * time.Second
	}
	at := a.now().Add(retire).UTC()
	old, next, err := a.keys.rotate(req.Kid, func(next *mqtt.Signer) error {
		return a.site.RotateKey(r.Context(), next, at)
	})
	var res rotateResult
	if err == nil {
		res = rotateResult{Retired: old.Kid, Kid: next.Kid, Public: next.publicBase64(), RetireAt: at}
	}
	a.logOutcome(r, ref, res, err)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("site key rotated", "retired", old.Kid, "kid", next.Kid, "retire_at", at, "by", operator(r))
	writeJSON(w, http.StatusOK, res)
}

// keyFile is the site key file and the key in it.
type keyFile struct {
	path string
	mu   sync.Mutex
	key  *siteKey
}

// signer returns the current key as an mqtt signer.
func (k *keyFile) signer() (*mqtt.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return mqtt.NewSigner(k.key.Kid, k.key.Key)
}

// nextPath is where a rotation writes the new key before the doors are
// told of it.
func (k *keyFile) nextPath() string { return k.path + ".next" }

// rotate makes a new key under kid (default: the current id's number plus
// one), writes it to nextPath, hands it to publish (which signs the
// rotation with the current key and tells the doors), and only then
// renames it over the key file. When publish fails the new file is
// removed and nothing changes.
func (k *keyFile) rotate(kid string, publish func(*mqtt.Signer) error) (old, next *siteKey, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kid == "" {
		kid = nextKid(k.key.Kid)
	}
	if kid == k.key.Kid {
		return nil, nil, badRequest(fmt.Errorf("kid %q is the current key's", kid))
	}
	np := k.nextPath()
	if _, err := os.Stat(np); err == nil {
		return nil, nil, fmt.Errorf("%w: %s is there from a rotation that did not finish; if `latch door list` shows the doors on its key, move it over %s, else remove it",
			site.ErrConflict, np, k.path)
	}
	nk, err := createSiteKey(np, k.key.Site, kid)
	if err != nil {
		return nil, nil, err
	}
	sg, err := mqtt.NewSigner(nk.Kid, nk.Key)
	if err == nil {
		err = publish(sg)
	}
	if err != nil {
		_ = os.Remove(np)
		return nil, nil, err
	}
	if err := os.Rename(np, k.path); err != nil {
		// The doors follow the new key: the service signs with it, and
		// the file must be moved by hand before the next start.
		return nil, nil, fmt.Errorf("site key rotated to %s, but %s could not replace %s: %w; move it by hand before latch serve starts again", nk.Kid, np, k.path, err)
	}
	old, k.key = k.key, nk
	return old, nk, nil
}

// nextKid is the key id after kid: its trailing number plus one, or kid
// with "-2".
func nextKid(kid string) string {
	i := len(kid)
	for i > 0 && kid[i-1] >= '0' && kid[i-1] <= '9' {
		i--
	}
	if i < len(kid) && i > 0 {
		if n, err := strconv.ParseUint(kid[i:], 10, 32); err == nil {
			return kid[:i] + strconv.FormatUint(n+1, 10)
		}
	}
	return kid + "-2"
}

func (a *api) doorUnapprove(w http.ResponseWriter, r *http.Request) {
	d, ok := a.door(w, r)
	if !ok {
		return
	}
	a.describe(r, "door "+d.ID, doorState(d.ID), "")
	if err := a.siteFor(r).Unapprove(d.ID); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Warn("door approval withdrawn", "door", d.ID, "by", operator(r))
	if d, ok = a.door(w, r); ok {
		writeJSON(w, http.StatusOK, a.doorView(d))
	}
}

// auditFindings lists what the collector found wrong in what doors sent.
func (a *api) auditFindings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	limit := defaultAuditLimit
	for k, v := range q {
		var err error
		switch {
		case len(v) != 1:
			err = fmt.Errorf("query parameter %q given %d times", k, len(v))
		case k == "after":
			after, err = strconv.ParseUint(v[0], 10, 64)
		case k == "limit":
			limit, err = strconv.Atoi(v[0])
			if err == nil && (limit < 1 || limit > maxAuditLimit) {
				err = fmt.Errorf("want 1 to %d", maxAuditLimit)
			}
		default:
			err = fmt.Errorf("unknown query parameter %q", k)
		}
		if err != nil {
			a.failErr(w, r, badRequest(fmt.Errorf("%s: %w", k, err)))
			return
		}
	}
	fs, err := a.db.Findings(after, limit)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if fs == nil {
		fs = []site.Finding{}
	}
	writeJSON(w, http.StatusOK, fs)
}
