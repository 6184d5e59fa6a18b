package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/latchdoor/latch/store/site"
)

// Notification rules through the API, beside those of the configuration
// file: stored in the site database, in force at once (the notifier
// reloads them), each change a change-log entry. Channels stay in the
// configuration file, since they hold secrets: a rule naming a channel the
// file lacks is refused; a stored rule whose channel the file lost is
// listed as "channel missing" and not in force.
//
//	GET    /v1/notify/rules                  []notifyRuleView: the file's ("config", read-only) and the stored ("api")
//	POST   /v1/notify/rules                  notifyRuleReq → notifyRuleView
//	DELETE /v1/notify/rules/{name}           notifyRuleView: the rule removed
//	POST   /v1/notify/rules/{name}/disable   notifyRuleView
//	POST   /v1/notify/rules/{name}/enable    notifyRuleView

// notifyRuleReq makes a stored rule: the fields of a [[notify.rule]],
// and disabled; created and by are the site's to set.
type notifyRuleReq = site.NotifyRule

// notifyRuleView is a rule as the API lists it.
type notifyRuleView struct {
	site.NotifyRule
	Source string `json:"source"` // "config" (the file's, read-only) or "api" (stored)
	State  string `json:"state"`  // "active", "disabled", "channel missing" or "invalid: why"
}

// Where a rule comes from.
const (
	ruleFromConfig = "config"
	ruleFromAPI    = "api"
)

func decodeNotifyRuleReq(b []byte) (notifyRuleReq, error) {
	var r notifyRuleReq
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if !r.Created.IsZero() || r.By != "" {
		return r, errors.New("created and by: the site sets them, leave them out")
	}
	return r, nil
}

// configRuleView is a rule of the configuration file as the API lists it.
func configRuleView(r *notifyRule) notifyRuleView {
	x := site.NotifyRule{Name: r.Name, Events: r.Events, Alarms: r.Alarms, Actions: r.Actions, Roles: r.Roles, Doors: r.Doors,
		Days: r.Days, Hours: r.Hours, TZ: r.TZ, Channel: r.Channel}
	if r.OpenFor.Duration > 0 {
		x.OpenFor = r.OpenFor.Duration.String()
	}
	return notifyRuleView{NotifyRule: x, Source: ruleFromConfig, State: "active"}
}

// notifyRuleReader is what reads stored rules: the database, or a
// change's transaction.
type notifyRuleReader interface {
	NotifyRule(name string) (site.NotifyRule, error)
}

func notifyRuleState(name string) recordState {
	return func(src records) (any, error) {
		nr, ok := src.(notifyRuleReader)
		if !ok {
			return nil, fmt.Errorf("change log: %T cannot read notification rules", src)
		}
		return absent(nr.NotifyRule(name))
	}
}

func (a *api) notifyRuleRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/notify/rules", a.notifyRuleList)
	m.HandleFunc("POST /v1/notify/rules", a.notifyRuleAdd)
	m.HandleFunc("DELETE /v1/notify/rules/{name}", a.storedRuleStep("remove", func(db *site.DB, x *site.NotifyRule) error {
		return db.DeleteNotifyRule(x.Name)
	}))
	m.HandleFunc("POST /v1/notify/rules/{name}/disable", a.notifyRuleSwitch(true))
	m.HandleFunc("POST /v1/notify/rules/{name}/enable", a.notifyRuleSwitch(false))
}

// notifier is latch serve's notifier, or an error when it has none.
func (a *api) notifier() (*notifier, error) {
	if a.alarms == nil || a.alarms.notifier == nil {
		return nil, errors.New("notifications are not running")
	}
	return a.alarms.notifier, nil
}

// ruleViews lists the configuration's rules, then the stored ones, each
// with how it stands.
func (n *notifier) ruleViews() ([]notifyRuleView, error) {
	stored, err := n.db.NotifyRules()
	if err != nil {
		return nil, err
	}
	out := make([]notifyRuleView, 0, len(n.cfg.Rules)+len(stored))
	for i := range n.cfg.Rules {
		out = append(out, configRuleView(&n.cfg.Rules[i]))
	}
	for _, x := range stored {
		_, state := n.ruleState(x)
		out = append(out, notifyRuleView{NotifyRule: x, Source: ruleFromAPI, State: state})
	}
	return out, nil
}

// configRule reports whether name is a rule of the configuration file.
func (n *notifier) configRule(name string) bool {
	for i := range n.cfg.Rules {
		if n.cfg.Rules[i].Name == name {
			return true
		}
	}
	return false
}

func (a *api) notifyRuleList(w http.ResponseWriter, r *http.Request) {
	n, err := a.notifier()
	var vs []notifyRuleView
	if err == nil {
		vs, err = n.ruleViews()
	}
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func (a *api) notifyRuleAdd(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(a, w, r, decodeNotifyRuleReq)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, "notify rule "+req.Name, notifyRuleState(req.Name), "channel "+req.Channel)
	n, err := a.notifier()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	x := req
	x.Created, x.By = a.now().UTC(), operator(r)
	rule, err := storedRule(x)
	if err == nil && !n.cfg.hasChannel(rule.Channel) {
		err = fmt.Errorf("notify rule %q: channel %q: want mqtt, or webhook:NAME or email:NAME of a [notify.webhook.NAME] or [notify.email.NAME] of latch serve's configuration file", x.Name, x.Channel)
	}
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	if n.configRule(x.Name) {
		a.failErr(w, r, fmt.Errorf("notify rule %q is in the configuration file: %w", x.Name, errExists))
		return
	}
	if _, err := a.db.NotifyRule(x.Name); err == nil {
		a.failErr(w, r, fmt.Errorf("notify rule %q: %w", x.Name, errExists))
		return
	} else if !errors.Is(err, site.ErrNotFound) {
		a.failErr(w, r, err)
		return
	}
	if err := a.dbFor(r).PutNotifyRule(x); err != nil {
		a.failErr(w, r, err)
		return
	}
	a.reloadRules(n)
	a.log.Info("notification rule added", "rule", x.Name, "channel", x.Channel, "by", operator(r))
	a.recordAPI(r, "notify rule add", "notify rule "+x.Name, "channel "+x.Channel)
	_, state := n.ruleState(x)
	writeJSON(w, http.StatusCreated, notifyRuleView{NotifyRule: x, Source: ruleFromAPI, State: state})
}

// reloadRules puts the stored rules in force after a change.
func (a *api) reloadRules(n *notifier) {
	if err := n.reload(); err != nil {
		a.log.Error("notification rules not reloaded: the change takes effect at the next start", "err", err)
	}
}

// storedRuleFor reads the stored rule of r's {name} for a change: a rule
// of the configuration file, or none, is an error.
func (a *api) storedRuleFor(r *http.Request, n *notifier) (site.NotifyRule, error) {
	name := r.PathValue("name")
	if n.configRule(name) {
		return site.NotifyRule{}, fmt.Errorf("notify rule %q is in the configuration file: change it there: %w", name, site.ErrConflict)
	}
	x, err := a.db.NotifyRule(name)
	if errors.Is(err, site.ErrNotFound) {
		err = fmt.Errorf("notify rule %q does not exist: %w", name, site.ErrNotFound)
	}
	return x, err
}

// storedRuleStep is a change of the stored rule of r's {name}: step
// edits it, or removes it, in db, the change's database.
func (a *api) storedRuleStep(what string, step func(db *site.DB, x *site.NotifyRule) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		name := r.PathValue("name")
		a.describe(r, "notify rule "+name, notifyRuleState(name), "")
		n, err := a.notifier()
		var x site.NotifyRule
		if err == nil {
			x, err = a.storedRuleFor(r, n)
		}
		if err == nil {
			err = step(a.dbFor(r), &x)
		}
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		a.reloadRules(n)
		a.log.Info("notification rule changed", "rule", name, "step", what, "by", operator(r))
		a.recordAPI(r, "notify rule "+what, "notify rule "+name, "")
		_, state := n.ruleState(x)
		writeJSON(w, http.StatusOK, notifyRuleView{NotifyRule: x, Source: ruleFromAPI, State: state})
	}
}

// notifyRuleSwitch disables a stored rule, or enables it again.
func (a *api) notifyRuleSwitch(disable bool) http.HandlerFunc {
	what := map[bool]string{true: "disable", false: "enable"}[disable]
	return a.storedRuleStep(what, func(db *site.DB, x *site.NotifyRule) error {
		if x.Disabled == disable {
			return fmt.Errorf("notify rule %q is already %sd: %w", x.Name, what, site.ErrConflict)
		}
		x.Disabled = disable
		return db.PutNotifyRule(*x)
	})
}

// --- the CLI ---

// commaList splits a comma-separated flag; empty: none.
func commaList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func cmdNotifyRules(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "notify rules", "/v1/notify/rules", func(w io.Writer, vs []notifyRuleView) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSOURCE\tSTATE\tCHANNEL\tON\tDOORS\tWHEN")
		for _, v := range vs {
			var on []string
			for _, f := range []struct {
				k  string
				vs []string
			}{{"events", v.Events}, {"alarms", v.Alarms}, {"actions", v.Actions}, {"roles", v.Roles}} {
				if len(f.vs) > 0 {
					on = append(on, f.k+" "+strings.Join(f.vs, ","))
				}
			}
			if v.OpenFor != "" {
				on = append(on, "open for "+v.OpenFor)
			}
			var at []string
			if len(v.Days) > 0 {
				at = append(at, strings.Join(v.Days, ","))
			}
			if v.Hours != "" {
				at = append(at, v.Hours)
			}
			if v.TZ != "" {
				at = append(at, v.TZ)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Source, v.State, v.Channel, strings.Join(on, "; "),
				dash(strings.Join(v.Doors, ",")), dash(strings.Join(at, " ")))
		}
		tw.Flush()
	})
}

func cmdNotifyRuleAdd(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "notify rule add")
	name := c.fs.String("name", "", "the rule's name, 1 to 64 characters (required)")
	events := c.fs.String("events", "", "door event reasons, comma-separated, e.g. granted,door_forced")
	alarms := c.fs.String("alarms", "", "alarm kinds, comma-separated, e.g. door_forced,offline")
	actions := c.fs.String("actions", "", "site actions, comma-separated, e.g. login")
	roles := c.fs.String("roles", "", "with --actions: the accounts' roles, comma-separated")
	doors := c.fs.String("doors", "", "the doors, comma-separated (none: every door)")
	days := c.fs.String("days", "", "the days, comma-separated: mon,tue,wed,thu,fri,sat,sun (none: every day)")
	hours := c.fs.String("hours", "", "the hours, HH:MM-HH:MM, e.g. 18:00-07:00 (none: all day)")
	tz := c.fs.String("tz", "", "the days' and hours' zone, e.g. Europe/Berlin (none: the service's)")
	openFor := c.fs.String("open-for", "", "with --alarms: once open this long, e.g. 5m")
	channel := c.fs.String("channel", "", "mqtt, webhook:NAME or email:NAME of latch serve's configuration (required)")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *name == "" || *channel == "" {
		return usagef("--name and --channel are required")
	}
	req := notifyRuleReq{Name: *name, Events: commaList(*events), Alarms: commaList(*alarms), Actions: commaList(*actions),
		Roles: commaList(*roles), Doors: commaList(*doors), Days: commaList(*days), Hours: *hours, TZ: *tz, OpenFor: *openFor, Channel: *channel}
	raw, err := c.client().call(ctx, "POST", "/v1/notify/rules", req)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer, v notifyRuleView) {
		fmt.Fprintf(w, "notify rule %s added: %s, to %s\n", v.Name, v.State, v.Channel)
	})
}

// notifyRuleCmd is `latch notify rule remove|disable|enable NAME`.
func notifyRuleCmd(step string) func(ctx context.Context, e *env, args []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		c := newClientCmd(e, "notify rule "+step)
		pos, err := c.parse(args, 1, "NAME")
		if err != nil {
			return err
		}
		method, path := "POST", "/v1/notify/rules/"+url.PathEscape(pos[0])+"/"+step
		if step == "remove" {
			method, path = "DELETE", "/v1/notify/rules/"+url.PathEscape(pos[0])
		}
		raw, err := c.client().call(ctx, method, path, nil)
		if err != nil {
			return err
		}
		return show(c, raw, func(w io.Writer, v notifyRuleView) {
			if step == "remove" {
				fmt.Fprintf(w, "notify rule %s removed\n", v.Name)
				return
			}
			fmt.Fprintf(w, "notify rule %s %sd: %s\n", v.Name, step, v.State)
		})
	}
}
