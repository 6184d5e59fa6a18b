package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/latchdoor/latch/store"
)

// clientCmd is what every client command shares: the service and the
// output form.
type clientCmd struct {
	e      *env
	fs     *flag.FlagSet
	socket *string
	json   *bool
}

func newClientCmd(e *env, name string) *clientCmd {
	fs := newFlags(name)
	return &clientCmd{e: e, fs: fs,
		socket: fs.String("socket", socketDefault(e), "the latch serve socket (env LATCH_SOCKET)"),
		json:   fs.Bool("json", false, "print JSON, for scripts"),
	}
}

func (c *clientCmd) parse(args []string, nargs int, names ...string) ([]string, error) {
	return parseFlags(c.e, c.fs, args, nargs, names...)
}

func (c *clientCmd) client() *client { return newClient(c.e, *c.socket) }

// show prints the answer raw with --json, else decodes it into v and
// calls human.
func show[T any](c *clientCmd, raw json.RawMessage, human func(w io.Writer, v T)) error {
	if *c.json {
		_, err := c.e.stdout.Write(raw)
		return err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.e.stdout, 0, 4, 2, ' ', 0)
	human(tw, v)
	if err := tw.Flush(); err != nil {
		return err
	}
	// A change's warning (changeResult.Warning), whatever the answer.
	var warn struct {
		Warning string `json:"warning"`
	}
	if json.Unmarshal(raw, &warn) == nil && warn.Warning != "" {
		fmt.Fprintln(c.e.stderr, "latch: warning: "+warn.Warning)
	}
	return nil
}

// change sends a change to the service and reports it as what.
func (c *clientCmd) change(ctx context.Context, method, path string, in any, what string) error {
	raw, err := c.client().call(ctx, method, path, in)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, r changeResult) {
		fmt.Fprintf(w, "%s (change %d)\n", what, r.Seq)
	})
}

// idCmd is a command whose one argument, arg (ID, NAME, DOOR), names
// what it asks about or changes: it sends method to the path made of the
// escaped argument and prints the answer with human.
func idCmd[T any](ctx context.Context, e *env, args []string, name, arg, method string, path func(id string) string, human func(w io.Writer, v T)) error {
	c := newClientCmd(e, name)
	pos, err := c.parse(args, 1, arg)
	if err != nil {
		return err
	}
	raw, err := c.client().call(ctx, method, path(url.PathEscape(pos[0])), nil)
	if err != nil {
		return err
	}
	return show(c, raw, human)
}

// listCmd is a command without arguments that prints what GET path
// answers.
func listCmd[T any](ctx context.Context, e *env, args []string, name, path string, human func(w io.Writer, v T)) error {
	c := newClientCmd(e, name)
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	raw, err := c.client().call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	return show(c, raw, human)
}

// uidArg parses args for a command whose one argument is a card UID.
func (c *clientCmd) uidArg(args []string) ([]byte, error) {
	pos, err := c.parse(args, 1, "UID")
	if err != nil {
		return nil, err
	}
	return cmdUID(pos[0])
}

// cmdUID reads a card UID given on the command line; a bad one is a usage
// error.
func cmdUID(s string) ([]byte, error) {
	uid, err := parseUID(s)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return uid, nil
}

func cmdHolderAdd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "holder add")
	name := c.fs.String("name", "", "display name")
	pos, err := c.parse(args, 1, "ID")
	if err != nil {
		return err
	}
	return c.change(ctx, "POST", "/v1/holders", holderAddReq{ID: pos[0], Name: *name}, fmt.Sprintf("holder %s added", pos[0]))
}

func cmdHolderList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "holder list", "/v1/holders", func(w io.Writer, hs []holderView) {
		fmt.Fprintln(w, "ID\tNAME\tREVOKED")
		for _, h := range hs {
			fmt.Fprintf(w, "%s\t%s\t%s\n", h.ID, dash(h.Name), dash(h.Revoked))
		}
	})
}

func cmdHolderShow(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "holder show", "ID", "GET", func(id string) string { return "/v1/holders/" + id }, func(w io.Writer, h holderView) {
		fmt.Fprintf(w, "holder:\t%s\nname:\t%s\nrevoked:\t%s\ncards:\t%d\n", h.ID, dash(h.Name), dash(h.Revoked), len(h.Cards))
		if len(h.Cards) > 0 {
			fmt.Fprintln(w)
			cardTable(w, h.Cards)
		}
	})
}

func cmdHolderRemove(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "holder remove")
	pos, err := c.parse(args, 1, "ID")
	if err != nil {
		return err
	}
	return c.change(ctx, "DELETE", "/v1/holders/"+url.PathEscape(pos[0]), nil, fmt.Sprintf("holder %s removed", pos[0]))
}

func cmdCardAdd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "card add")
	holder := c.fs.String("holder", "", "the card's holder (required)")
	cf := addCardFlags(c, "")
	doors, from, until := cf.doors, cf.from, cf.until
	uid, err := c.uidArg(args)
	if err != nil {
		return err
	}
	if *holder == "" {
		return usagef("--holder H is required")
	}
	req := cardAddReq{UID: fmt.Sprintf("%X", uid), Holder: *holder, Flags: cf.flags()}
	if req.Schedule, err = cf.scheduleOf(); err != nil {
		return err
	}
	if *doors != "" {
		req.Doors = strings.Split(*doors, ",")
	}
	if req.ValidFrom, err = parseWhen("--from", *from); err != nil {
		return err
	}
	if req.ValidUntil, err = parseWhen("--until", *until); err != nil {
		return err
	}
	return c.change(ctx, "POST", "/v1/cards", req, fmt.Sprintf("card %s added for %s", req.UID, *holder))
}

// parseWhen reads an RFC 3339 time or a date (local midnight); "" is the
// zero time.
func parseWhen(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("%s %q: want an RFC 3339 time (2026-03-01T08:00:00Z) or a date (2026-03-01)", flag, s)
}

func cmdCardList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "card list", "/v1/cards", cardTable)
}

// cardTable prints cards as a table.
func cardTable(w io.Writer, cs []cardView) {
	fmt.Fprintln(w, "UID\tHOLDER\tDOORS\tVALID FROM\tVALID UNTIL\tPIN\tREVOKED")
	for _, v := range cs {
		rev := v.Revoked
		if rev == "" && v.HolderRevoked != "" {
			rev = "holder: " + v.HolderRevoked
		}
		pin := "no"
		if v.PINSet {
			pin = "set"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.UID, v.Holder, dash(strings.Join(v.Doors, ",")),
			when(v.ValidFrom), when(v.ValidUntil), pin, dash(rev))
	}
}

func cmdCardShow(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "card show")
	uid, err := c.uidArg(args)
	if err != nil {
		return err
	}
	raw, err := c.client().call(ctx, "GET", fmt.Sprintf("/v1/cards/%X", uid), nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, v cardView) {
		cardTable(w, []cardView{v})
		var sw []string
		for _, f := range []struct {
			on   bool
			name string
		}{{v.Flags.CardOnly, "card-only"}, {v.Flags.ExtendedUnlock, "extended-unlock"}, {v.Flags.LockdownOverride, "lockdown-override"}} {
			if f.on {
				sw = append(sw, f.name)
			}
		}
		fmt.Fprintf(w, "\nschedule: %s\nswitches: %s\n", formatSchedule(v.Schedule), dash(strings.Join(sw, ",")))
	})
}

func cmdCardRemove(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "card remove")
	uid, err := c.uidArg(args)
	if err != nil {
		return err
	}
	return c.change(ctx, "DELETE", fmt.Sprintf("/v1/cards/%X", uid), nil, fmt.Sprintf("card %X removed", uid))
}

func cmdPINSet(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "pin set")
	uidFlag := c.fs.String("uid", "", "the card whose PIN to set (required)")
	pos, err := c.parse(args, 1, "HOLDER")
	if err != nil {
		return err
	}
	if *uidFlag == "" {
		return usagef("--uid UID is required")
	}
	uid, err := cmdUID(*uidFlag)
	if err != nil {
		return err
	}
	pin, err := readPIN(e)
	if err != nil {
		return err
	}
	req := pinSetReq{Holder: pos[0], PIN: string(pin)}
	clear(pin)
	return c.change(ctx, "POST", fmt.Sprintf("/v1/cards/%X/pin", uid), req, fmt.Sprintf("PIN set for card %X of %s", uid, pos[0]))
}

// readPIN reads a PIN: prompted twice without echo when standard input is
// a terminal, else one line of standard input.
func readPIN(e *env) ([]byte, error) { return readSecret(e, "PIN") }

// readSecret reads a secret (what: "PIN", "password"): prompted twice
// without echo when standard input is a terminal, else one line of
// standard input.
func readSecret(e *env, what string) ([]byte, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprintf(e.stderr, "%s: ", what)
		p1, err := term.ReadPassword(fd)
		fmt.Fprintln(e.stderr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		fmt.Fprintf(e.stderr, "%s again: ", what)
		p2, err := term.ReadPassword(fd)
		fmt.Fprintln(e.stderr)
		if err != nil {
			clear(p1)
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		same := bytes.Equal(p1, p2)
		clear(p2)
		if !same {
			clear(p1)
			return nil, fmt.Errorf("the two %ss differ; nothing was changed", what)
		}
		return p1, nil
	}
	line, err := bufio.NewReader(io.LimitReader(e.stdin, 1100)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s from standard input: %w", what, err)
	}
	secret := bytes.TrimRight(line, "\r\n")
	if len(secret) == 0 {
		return nil, fmt.Errorf("no %s on standard input (one line, or run it on a terminal to be prompted)", what)
	}
	return secret, nil
}

func cmdRevoke(ctx context.Context, e *env, args []string) error {
	return revocationCmd(ctx, e, args, true)
}
func cmdReinstate(ctx context.Context, e *env, args []string) error {
	return revocationCmd(ctx, e, args, false)
}

// revocationCmd is `latch revoke` (on) and `latch reinstate`.
func revocationCmd(ctx context.Context, e *env, args []string, on bool) error {
	name, path, done := "revoke", "/v1/revoke", "revoked"
	if !on {
		name, path, done = "reinstate", "/v1/reinstate", "reinstated"
	}
	c := newClientCmd(e, name)
	uidFlag := c.fs.String("uid", "", "the card")
	holder := c.fs.String("holder", "", "the holder (all their cards)")
	reason := c.fs.String("reason", "", "why, for the audit log")
	wait := c.fs.Bool("wait", false, "wait until every online door has applied it, and say which have not")
	timeout := c.fs.Duration("timeout", 30*time.Second, "with --wait, how long to wait at most")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout %v: want more than 0", *timeout)
	}
	if (*uidFlag == "") == (*holder == "") {
		return usagef("name either --uid UID or --holder H")
	}
	if on && strings.TrimSpace(*reason) == "" {
		return usagef("--reason R is required: say why, for the audit log")
	}
	req := revokeReq{Holder: *holder, Reason: *reason}
	what := "holder " + *holder
	if *uidFlag != "" {
		uid, err := cmdUID(*uidFlag)
		if err != nil {
			return err
		}
		req.UID = fmt.Sprintf("%X", uid)
		what = "card " + req.UID
	}
	if !*wait {
		return c.change(ctx, "POST", path, req, what+" "+done)
	}
	return c.changeAndWait(ctx, "POST", path, req, what+" "+done, *timeout)
}

func cmdDoorList(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "door list", "/v1/doors", func(w io.Writer, ds []doorView) {
		fmt.Fprintln(w, "DOOR\tGROUPS\tIDENTITY\tONLINE\tSTATE\tLAST SEEN\tAPPLIED\tVIEW\tLATEST")
		for _, d := range ds {
			id := dash(d.Identity)
			if d.Pending != "" {
				id += " (pending " + d.Pending + ")"
			}
			if d.Next != "" {
				id += " (next " + d.Next + ")"
			}
			latest, online := "no", "no"
			if d.Current {
				latest = "yes"
			}
			if d.Online {
				online = "yes"
			}
			state := dash(d.State)
			if d.Lockdown {
				state += ",lockdown"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, dash(strings.Join(d.Groups, ",")), id,
				online, state, when(d.LastSeen), d.AppliedSeq, d.ViewSeq, latest)
		}
	})
}

func cmdAuditQuery(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit query")
	filter := auditFilterFlags(c.fs)
	limit := c.fs.Int("limit", 0, fmt.Sprintf("at most this many events (default %d, at most %d)", defaultAuditLimit, maxAuditLimit))
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	q, err := filter()
	if err != nil {
		return err
	}
	if *limit < 0 || *limit > maxAuditLimit {
		return usagef("--limit %d: want 1 to %d", *limit, maxAuditLimit)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	raw, err := c.client().call(ctx, "GET", "/v1/audit/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, evs []store.Event) {
		fmt.Fprintln(w, "TIME\tDOOR\tSEQ\tTYPE\tREASON\tUID\tHOLDER\tDETAIL")
		for _, ev := range evs {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", ev.Time.Local().Format(time.RFC3339), ev.Door, ev.Seq,
				ev.Type, ev.Reason, dash(ev.UID), dash(ev.Holder), dash(ev.Detail))
		}
	})
}

func cmdAuditVerify(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit verify")
	door := c.fs.String("door", "", "verify only this door")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	path := "/v1/audit/verify"
	if *door != "" {
		path += "?door=" + url.QueryEscape(*door)
	}
	raw, err := c.client().call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	var vs []verifyView
	if err := json.Unmarshal(raw, &vs); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	err = show(c, raw, func(w io.Writer, vs []verifyView) {
		if len(vs) == 0 {
			fmt.Fprintln(w, "no doors to verify")
			return
		}
		fmt.Fprintln(w, "DOOR\tCHAIN\tCONTIGUOUS\tFIRST BAD ENTRY")
		for _, v := range vs {
			state, bad := "ok", "-"
			if !v.OK {
				state, bad = "BAD", fmt.Sprintf("seq %d: %s", v.Seq, v.Problem)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", verifiedName(v, false), state, v.Contiguous, bad)
		}
	})
	if err != nil {
		return err
	}
	// A bad chain fails the command, so that a script notices.
	for _, v := range vs {
		if !v.OK {
			return fmt.Errorf("%s: the stored chain is bad at seq %d: %s", verifiedName(v, true), v.Seq, v.Problem)
		}
	}
	return nil
}

func cmdBackup(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "backup")
	pos, err := c.parse(args, 1, "FILE")
	if err != nil {
		return err
	}
	dst := pos[0]
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s exists; a backup never replaces a file", dst)
	}
	resp, err := c.client().request(ctx, "GET", "/v1/backup", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := writeBackup(dst, resp)
	if err != nil {
		return err
	}
	if *c.json {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"file": dst, "bytes": n})
	}
	fmt.Fprintf(e.stdout, "backup written to %s (%d bytes)\n", dst, n)
	return nil
}

// writeBackup writes the body of a backup answer to dst, through a
// temporary file beside it, and puts it in place (never over a file) only
// if every byte the service says it sent (its trailer) arrived.
func writeBackup(dst string, resp *http.Response) (n int64, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".latch-backup-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	n, err = io.Copy(tmp, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: cut short after %d bytes: %w", n, err)
	}
	if want := resp.Trailer.Get(backupTrailer); want != strconv.FormatInt(n, 10) {
		return n, fmt.Errorf("backup: the service did not finish the copy (%d bytes arrived); see its log", n)
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	// A link, unlike a rename, fails if dst appeared meanwhile.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// dash shows an empty field as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when shows a time in local time, or "-".
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}
