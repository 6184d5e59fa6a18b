package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// waitPoll is how often --wait asks the service where the doors are.
const waitPoll = 200 * time.Millisecond

// changeAndWait sends a change, then waits until every online door has
// applied it (its view seq at the change) or timeout passes, and says
// which doors have not. A door that is online and has not applied it by
// then fails the command; one that is offline is named, and catches up
// when it is back.
func (c *clientCmd) changeAndWait(ctx context.Context, method, path string, in any, what string, timeout time.Duration) error {
	cl := c.client()
	raw, err := cl.call(ctx, method, path, in)
	if err != nil {
		return err
	}
	var res changeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	if !*c.json {
		fmt.Fprintf(c.e.stdout, "%s (change %d); waiting for %s\n", what, res.Seq, doorsN(len(res.Doors)))
	}
	start := time.Now()
	deadline := start.Add(timeout)
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	var ds []doorView
	for {
		draw, err := cl.call(ctx, "GET", "/v1/doors", nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(draw, &ds); err != nil {
			return fmt.Errorf("latch service: answer: %w", err)
		}
		if len(pendingDoors(ds, res.Doors, true)) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	online, offline := pendingDoors(ds, res.Doors, true), pendingDoors(ds, res.Doors, false)
	took := time.Since(start).Round(time.Millisecond)
	if *c.json {
		out := struct {
			changeResult
			WaitedMS   int64    `json:"waited_ms"`
			NotApplied []string `json:"not_applied,omitempty"` // online doors that had not applied it
			Offline    []string `json:"offline,omitempty"`     // offline doors that had not
		}{res, took.Milliseconds(), online, offline}
		if err := json.NewEncoder(c.e.stdout).Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.e.stdout, "%d of %s applied it in %v\n", len(res.Doors)-len(online)-len(offline), doorsN(len(res.Doors)), took)
		for _, d := range offline {
			fmt.Fprintf(c.e.stdout, "door %s is offline: it gets the change when it is back\n", d)
		}
	}
	if len(online) > 0 {
		return fmt.Errorf("online doors that had not applied change %d after %v: %s", res.Seq, timeout, strings.Join(online, ", "))
	}
	return nil
}

// doorsN is "1 door" or "n doors".
func doorsN(n int) string {
	if n == 1 {
		return "1 door"
	}
	return strconv.Itoa(n) + " doors"
}

// pendingDoors returns, in order, the doors of targets (door → view seq)
// that have not applied their target yet and are online (or offline).
func pendingDoors(ds []doorView, targets map[string]uint64, online bool) []string {
	var out []string
	for _, d := range ds {
		want, ok := targets[d.ID]
		if ok && d.AppliedSeq < want && d.Online == online {
			out = append(out, d.ID)
		}
	}
	slices.Sort(out)
	return out
}

func cmdDoorShow(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "door show", "DOOR", "GET", func(id string) string { return "/v1/doors/" + id }, func(w io.Writer, d doorView) {
		fmt.Fprintf(w, "door\t%s\n", d.ID)
		fmt.Fprintf(w, "groups\t%s\n", dash(strings.Join(d.Groups, ",")))
		fmt.Fprintf(w, "identity\t%s\n", dash(d.Identity))
		fmt.Fprintf(w, "pending\t%s\n", dash(d.Pending))
		fmt.Fprintf(w, "next identity\t%s\n", dash(d.Next))
		fmt.Fprintf(w, "online\t%v\n", d.Online)
		fmt.Fprintf(w, "state\t%s\n", dash(d.State))
		fmt.Fprintf(w, "lockdown\t%v\n", d.Lockdown)
		fmt.Fprintf(w, "last seen\t%s\n", when(d.LastSeen))
		fmt.Fprintf(w, "applied\t%d of %d\n", d.AppliedSeq, d.ViewSeq)
	})
}

// cmdDoorApprove approves the identity a door announced. Without
// --fingerprint, on a terminal, it shows the pending fingerprint and asks
// the admin to compare it with what the door shows (latchd
// -show-identity) and type yes.
func cmdDoorApprove(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "door approve")
	fp := c.fs.String("fingerprint", "", "the fingerprint latchd -show-identity prints at the door")
	pos, err := c.parse(args, 1, "DOOR")
	if err != nil {
		return err
	}
	door := pos[0]
	cl := c.client()
	if *fp == "" {
		if !isTerminal(e.stdin) {
			return usagef("--fingerprint FP is required when not on a terminal")
		}
		raw, err := cl.call(ctx, "GET", "/v1/doors/"+url.PathEscape(door), nil)
		if err != nil {
			return err
		}
		var d doorView
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("latch service: answer: %w", err)
		}
		want := d.Pending
		what := "identity"
		if want == "" && d.Next != "" {
			want, what = d.Next, "next identity"
		}
		if want == "" {
			return fmt.Errorf("door %s has no identity waiting for approval", door)
		}
		fmt.Fprintf(e.stdout, "door %s announces the %s\n\n    %s\n\nCompare it with what `latchd -show-identity` prints at the door. Approve it? Type yes: ", door, what, want)
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return fmt.Errorf("door %s not approved", door)
		}
		*fp = want
	}
	raw, err := cl.call(ctx, "POST", "/v1/doors/"+url.PathEscape(door)+"/approve", approveReq{Fingerprint: *fp})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, d doorView) {
		fmt.Fprintf(w, "door %s approved: %s\n", d.ID, d.Identity)
	})
}

func cmdDoorGroups(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "door groups")
	pos, err := c.parse(args, 2, "DOOR", "GROUPS")
	if err != nil {
		return err
	}
	groups := []string{}
	if pos[1] != "" && pos[1] != "-" {
		groups = strings.Split(pos[1], ",")
	}
	raw, err := c.client().call(ctx, "PUT", "/v1/doors/"+url.PathEscape(pos[0])+"/groups", groupsReq{Groups: groups})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, r groupsResult) {
		fmt.Fprintf(w, "door %s in groups %s (its view at %d)\n", pos[0], dash(strings.Join(groups, ",")), r.ViewSeq)
	})
}

func cmdDoorUnlock(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "door unlock")
	d := c.fs.Duration("for", 5*time.Second, "how long, at most 1m")
	pos, err := c.parse(args, 1, "DOOR")
	if err != nil {
		return err
	}
	if *d <= 0 || *d > time.Minute {
		return usagef("--for %v: want more than 0 and at most 1m", *d)
	}
	return c.command(ctx, pos[0], "unlock", unlockReq{DurationMS: d.Milliseconds()}, fmt.Sprintf("unlock for %v", *d))
}

func cmdDoorLockdown(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "door lockdown")
	all := c.fs.Bool("all", false, "every approved door")
	rest, err := c.parse(args, -1)
	if err != nil {
		return err
	}
	var doors []string
	switch {
	case *all && len(rest) == 1:
	case !*all && len(rest) == 2:
		doors, rest = rest[:1], rest[1:]
	default:
		return usagef("usage: latch door lockdown DOOR|--all on|off")
	}
	var on bool
	switch rest[0] {
	case "on":
		on = true
	case "off":
	default:
		return usagef("lockdown %q: want on or off", rest[0])
	}
	if *all {
		raw, err := c.client().call(ctx, "GET", "/v1/doors", nil)
		if err != nil {
			return err
		}
		var ds []doorView
		if err := json.Unmarshal(raw, &ds); err != nil {
			return fmt.Errorf("latch service: answer: %w", err)
		}
		for _, d := range ds {
			if d.Identity != "" {
				doors = append(doors, d.ID)
			}
		}
		if len(doors) == 0 {
			return fmt.Errorf("no approved doors")
		}
	}
	var failed []string
	for _, d := range doors {
		if err := c.command(ctx, d, "lockdown", lockdownReq{On: &on}, "lockdown "+rest[0]); err != nil {
			if !*all {
				return err
			}
			failed = append(failed, fmt.Sprintf("%s (%v)", d, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("lockdown %s not sent to %d of %d doors: %s", rest[0], len(failed), len(doors), strings.Join(failed, "; "))
	}
	return nil
}

// command sends one door command and prints what was sent.
func (c *clientCmd) command(ctx context.Context, door, action string, in any, what string) error {
	raw, err := c.client().call(ctx, "POST", "/v1/doors/"+url.PathEscape(door)+"/"+action, in)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, r commandResult) {
		fmt.Fprintf(w, "door %s: %s sent (command %s)\n", r.Door, what, r.ID)
	})
}

func cmdKeysRotate(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "keys rotate")
	kid := c.fs.String("kid", "", "the new key's id (default: the current id's number plus one)")
	retire := c.fs.Duration("retire-after", time.Hour, "how long doors still accept the old key")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *retire < time.Second || *retire > 30*24*time.Hour {
		return usagef("--retire-after %v: want 1s to 720h", *retire)
	}
	raw, err := c.client().call(ctx, "POST", "/v1/keys/rotate", rotateReq{Kid: *kid, RetireAfterS: int64(*retire / time.Second)})
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, r rotateResult) {
		fmt.Fprintf(w, "site key rotated: %s replaces %s, which doors accept until %s\n", r.Kid, r.Retired, r.RetireAt.Local().Format(time.RFC3339))
		fmt.Fprintf(w, "doors learn it from the key chain; for new doors' [mqtt.trusted_keys]:\n  %s = %q\n", r.Kid, r.Public)
	})
}

func cmdDoorUnapprove(ctx context.Context, e *env, args []string) error {
	return idCmd(ctx, e, args, "door unapprove", "DOOR", "DELETE", func(id string) string { return "/v1/doors/" + id + "/approval" }, func(w io.Writer, d doorView) {
		fmt.Fprintf(w, "door %s: approval withdrawn; its events and requests are refused from now on\n", d.ID)
	})
}

func cmdAuditFindings(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit findings")
	after := c.fs.Uint64("after", 0, "only findings after this id")
	limit := c.fs.Int("limit", defaultAuditLimit, "at most this many")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *limit < 1 || *limit > maxAuditLimit {
		return usagef("--limit %d: want 1 to %d", *limit, maxAuditLimit)
	}
	q := url.Values{"after": {strconv.FormatUint(*after, 10)}, "limit": {strconv.Itoa(*limit)}}
	raw, err := c.client().call(ctx, "GET", "/v1/audit/findings?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, fs []site.Finding) {
		if len(fs) == 0 {
			fmt.Fprintln(w, "no findings")
			return
		}
		fmt.Fprintln(w, "ID\tFOUND\tDOOR\tSEQ\tFINDING\tDETAIL")
		for _, f := range fs {
			fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\n", f.ID, when(f.Time), f.Door, f.Seq, f.Reason, f.Detail)
		}
	})
}
