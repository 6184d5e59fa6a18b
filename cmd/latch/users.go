package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The web console's accounts, through the API:
//
//	GET    /v1/users                    []userView
//	POST   /v1/users                    userAddReq → userView
//	PUT    /v1/users/{name}/password    passwordReq → userView
//	PUT    /v1/users/{name}/role        roleReq → userView
//	DELETE /v1/users/{name}             userView
//	GET    /v1/audit/actions?before=&limit=&user=   []site.Action, newest first
//
// A password travels only in a request body and is kept only as an
// argon2id hash. A new password or role ends the account's sessions.

// Password rules.
const (
	minPassword = 12
	maxPassword = 1024
)

// userView is an account as the API shows it: no hash.
type userView struct {
	Name     string    `json:"name"`
	Role     site.Role `json:"role"`
	Created  time.Time `json:"created"`
	Changed  time.Time `json:"changed"`
	Disabled bool      `json:"disabled,omitempty"`
}

func newUserView(u site.User) userView {
	return userView{Name: u.Name, Role: u.Role, Created: u.Created, Changed: u.Changed, Disabled: u.Disabled}
}

// userAddReq adds an account.
type userAddReq struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

// passwordReq sets an account's password.
type passwordReq struct {
	Password string `json:"password"`
}

// roleReq sets an account's role.
type roleReq struct {
	Role string `json:"role"`
}

// checkPassword applies the password rules.
func checkPassword(name, pw string) error {
	switch {
	case len(pw) < minPassword:
		return fmt.Errorf("the password has %d characters: at least %d, please (a phrase of a few words is easy to type)", len(pw), minPassword)
	case len(pw) > maxPassword:
		return fmt.Errorf("the password is longer than %d bytes", maxPassword)
	case strings.EqualFold(pw, name):
		return errors.New("the password is the account's name")
	}
	return nil
}

// checkNameRole checks an account's or a token's name and role, with
// the site's words for what is wrong.
func checkNameRole(name, role string) error {
	if err := site.CheckUserName(name); err != nil {
		return unprefix(err, site.ErrInvalid.Error()+": ")
	}
	if _, err := site.ParseRole(role); err != nil {
		return unprefix(err, site.ErrInvalid.Error()+": ")
	}
	return nil
}

func decodeUserAdd(b []byte) (userAddReq, error) {
	var r userAddReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := checkNameRole(r.Name, r.Role); err != nil {
		return r, err
	}
	return r, checkPassword(r.Name, r.Password)
}

func (a *api) userRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/users", a.userList)
	m.HandleFunc("POST /v1/users", a.userAdd)
	m.HandleFunc("PUT /v1/users/{name}/password", a.userPassword)
	m.HandleFunc("PUT /v1/users/{name}/role", a.userRole)
	m.HandleFunc("DELETE /v1/users/{name}", a.userRemove)
	m.HandleFunc("GET /v1/audit/actions", a.auditActions)
}

// auditActions lists the site's log of actions, newest first: before a
// seq (none: from the newest), at most limit, of one user if given.
func (a *api) auditActions(w http.ResponseWriter, r *http.Request) {
	get, err := queryValues(r.URL.Query(), "before", "limit", "user")
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	var before uint64
	if s := get("before"); s != "" {
		if before, err = strconv.ParseUint(s, 10, 64); err != nil {
			a.failErr(w, r, badRequest(fmt.Errorf("before %q: want an action's seq", s)))
			return
		}
	}
	limit := defaultAuditLimit
	if s := get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxAuditLimit {
			a.failErr(w, r, badRequest(fmt.Errorf("limit %q: want 1 to %d", s, maxAuditLimit)))
			return
		}
	}
	user := get("user")
	var keep func(*site.Action) bool
	if user != "" {
		keep = func(x *site.Action) bool { return x.User == user }
	}
	out, _, err := a.db.Actions(before, limit, 0, keep)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if out == nil {
		out = []site.Action{}
	}
	writeJSON(w, http.StatusOK, out)
}

func cmdAuditActions(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit actions")
	user := c.fs.String("user", "", "only this account's actions")
	limit := c.fs.Int("limit", 50, "at most this many, newest first")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *limit < 1 || *limit > maxAuditLimit {
		return usagef("--limit %d: want 1 to %d", *limit, maxAuditLimit)
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *user != "" {
		q.Set("user", *user)
	}
	raw, err := c.client().call(ctx, "GET", "/v1/audit/actions?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, as []site.Action) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ	TIME	ACCOUNT	FROM	ACTION	ON	DETAIL	RESULT")
		for _, x := range as {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Seq, when(x.Time), x.User, x.From, x.What, x.Target, x.Detail, x.Result)
		}
		tw.Flush()
	})
}

// consoleKey marks a request the console makes in-process: the console
// records it in the site's log of actions itself.
type consoleKey struct{}

// recordAPI records an account change made over the socket in the site's
// log of actions; the console records its own.
func (a *api) recordAPI(r *http.Request, what, target, detail string) {
	if r.Context().Value(consoleKey{}) != nil {
		return
	}
	if _, err := a.db.AppendAction(site.Action{Time: a.now().UTC(), User: operator(r), From: "socket", What: what, Target: target, Detail: detail, Result: "ok"}); err != nil {
		a.log.Error("record an action", "what", what, "err", err)
	}
}

func (a *api) userList(w http.ResponseWriter, r *http.Request) {
	us, err := a.db.ListUsers()
	listViews(a, w, r, us, err, func(u site.User) (userView, error) { return newUserView(u), nil })
}

// hashPassword hashes a password, as many at once as PIN hashes.
func (a *api) hashPassword(ctx context.Context, pw string) (string, error) {
	release, err := a.hashSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return store.HashSecret([]byte(pw), a.pins)
}

func (a *api) userAdd(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeUserAdd)
	if !ok {
		return
	}
	hash, err := a.hashPassword(r.Context(), req.Password)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "account "+req.Name, userState(req.Name), "role "+req.Role)
	if _, err := a.db.User(req.Name); err == nil {
		a.failErr(w, r, fmt.Errorf("account %q: %w", req.Name, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, err)
		return
	}
	now := a.now().UTC()
	u := site.User{Name: req.Name, Role: site.Role(req.Role), Hash: hash, Created: now, Changed: now}
	if err := a.dbFor(r).PutUser(u); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("console account added", "user", u.Name, "role", u.Role, "by", operator(r))
	a.recordAPI(r, "account add", "account "+u.Name, "role "+string(u.Role))
	writeJSON(w, http.StatusCreated, newUserView(u))
}

// editUser changes an account under a.mu and answers with it; fn may
// refuse the change.
func (a *api) editUser(w http.ResponseWriter, r *http.Request, what string, fn func(*site.User) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := r.PathValue("name")
	a.describe(r, "account "+name, userState(name), what)
	u, err := a.db.User(name)
	if errors.Is(err, site.ErrNotFound) {
		err = fmt.Errorf("account %q does not exist: %w", name, site.ErrNotFound)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if err := fn(&u); err != nil {
		a.failErr(w, r, err)
		return
	}
	u.Changed = a.now().UTC()
	if err := a.dbFor(r).PutUser(u); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("console account changed", "user", u.Name, "what", what, "by", operator(r))
	a.recordAPI(r, what, "account "+u.Name, "role "+string(u.Role))
	writeJSON(w, http.StatusOK, newUserView(u))
}

func (a *api) userPassword(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, func(b []byte) (passwordReq, error) {
		var p passwordReq
		if err := decodeStrict(b, &p); err != nil {
			return p, err
		}
		return p, checkPassword(r.PathValue("name"), p.Password)
	})
	if !ok {
		return
	}
	hash, err := a.hashPassword(r.Context(), req.Password)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.editUser(w, r, "password set", func(u *site.User) error { u.Hash = hash; return nil })
}

// lastAdmin returns an error when name is the site's only admin account:
// removing or demoting it would leave nobody to manage the accounts from
// the console.
func (a *api) lastAdmin(name string) error {
	us, err := a.db.ListUsers()
	if err != nil {
		return err
	}
	admins, is := 0, false
	for _, u := range us {
		if u.Role == site.RoleAdmin {
			admins++
			is = is || u.Name == name
		}
	}
	if is && admins == 1 {
		return fmt.Errorf("account %q is the only admin: make another admin first: %w", name, site.ErrConflict)
	}
	return nil
}

func (a *api) userRole(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, func(b []byte) (roleReq, error) {
		var p roleReq
		if err := decodeStrict(b, &p); err != nil {
			return p, err
		}
		_, err := site.ParseRole(p.Role)
		return p, err
	})
	if !ok {
		return
	}
	a.editUser(w, r, "role set", func(u *site.User) error {
		if req.Role != string(site.RoleAdmin) {
			if err := a.lastAdmin(u.Name); err != nil {
				return err
			}
		}
		u.Role = site.Role(req.Role)
		return nil
	})
}

func (a *api) userRemove(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := r.PathValue("name")
	a.describe(r, "account "+name, userState(name), "")
	u, err := a.db.User(name)
	if err == nil {
		err = a.lastAdmin(name)
	}
	if err == nil {
		err = a.dbFor(r).DeleteUser(name)
	}
	if errors.Is(err, site.ErrNotFound) {
		err = fmt.Errorf("account %q does not exist: %w", name, site.ErrNotFound)
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.log.Info("console account removed", "user", name, "by", operator(r))
	a.recordAPI(r, "account remove", "account "+name, "")
	writeJSON(w, http.StatusOK, newUserView(u))
}

// --- the CLI ---

func cmdUserAdd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "user add")
	role := c.fs.String("role", "", "admin, operator or auditor")
	pos, err := c.parse(args, 1, "NAME")
	if err != nil {
		return err
	}
	if _, err := site.ParseRole(*role); err != nil {
		return usagef("--role %q: want admin, operator or auditor", *role)
	}
	return c.sendPassword(ctx, "POST", "/v1/users", func(pw string) any { return userAddReq{Name: pos[0], Role: *role, Password: pw} },
		"account %s added, role %s: it logs in to the console\n")
}

// sendPassword reads a password (prompted, or a line of standard input),
// sends the request req makes of it, and prints the account with format
// (its name and role).
func (c *clientCmd) sendPassword(ctx context.Context, method, path string, req func(pw string) any, format string) error {
	pw, err := readSecret(c.e, "password")
	if err != nil {
		return err
	}
	defer clear(pw)
	raw, err := c.client().call(ctx, method, path, req(string(pw)))
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, u userView) { fmt.Fprintf(w, format, u.Name, u.Role) })
}

func cmdUserList(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "user list")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	raw, err := c.client().call(ctx, "GET", "/v1/users", nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, us []userView) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tCHANGED")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Created.Local().Format(time.DateTime), u.Changed.Local().Format(time.DateTime))
		}
		tw.Flush()
	})
}

func cmdUserPasswd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "user passwd")
	pos, err := c.parse(args, 1, "NAME")
	if err != nil {
		return err
	}
	return c.sendPassword(ctx, "PUT", "/v1/users/"+url.PathEscape(pos[0])+"/password", func(pw string) any { return passwordReq{Password: pw} },
		"account %s (%s) has a new password; its sessions ended\n")
}

func cmdUserRole(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "user role")
	pos, err := c.parse(args, 2, "NAME", "ROLE")
	if err != nil {
		return err
	}
	raw, err := c.client().call(ctx, "PUT", "/v1/users/"+url.PathEscape(pos[0])+"/role", roleReq{Role: pos[1]})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, u userView) {
		fmt.Fprintf(w, "account %s is now %s; its sessions ended\n", u.Name, u.Role)
	})
}

func cmdUserRemove(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "user remove", "NAME", "DELETE", func(id string) string { return "/v1/users/" + id }, func(w io.Writer, u userView) {
		fmt.Fprintf(w, "account %s removed\n", u.Name)
	})
}
