package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchdoor/latch/store/site"
)

// The alarms' notification rules page: everyone lists the rules, the
// configuration file's and the stored ones; an admin adds, disables,
// enables and removes stored ones, through the API as the session's
// account.

// notifyRulePageRoutes adds the rules page.
func (c *console) notifyRulePageRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /alarms/rules", c.auth(site.RoleAuditor, c.notifyRulesPage))
	m.HandleFunc("POST /alarms/rules", c.auth(site.RoleAdmin, c.notifyRuleAddForm))
	m.HandleFunc("POST /alarms/rules/{name}/{step}", c.auth(site.RoleAdmin, c.notifyRuleStepForm))
}

func (c *console) notifyRulesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	res := c.call(r, ss, "GET", "/v1/notify/rules", nil)
	if err := res.err(); err != nil {
		c.errorPage(w, r, ss, res.code, err)
		return
	}
	var rules []notifyRuleView
	if err := json.Unmarshal(res.body, &rules); err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	c.page(w, r, ss, "notifyrules", "Notification rules", rules)
}

func (c *console) notifyRuleAddForm(w http.ResponseWriter, r *http.Request, ss *session) {
	req := notifyRuleReq{Name: strings.TrimSpace(r.PostFormValue("name")), Events: formList(r.PostFormValue("events")), Alarms: formList(r.PostFormValue("alarms")),
		Actions: formList(r.PostFormValue("actions")), Roles: formList(r.PostFormValue("roles")), Doors: formList(r.PostFormValue("doors")), Days: formList(r.PostFormValue("days")),
		Hours: strings.TrimSpace(r.PostFormValue("hours")), TZ: strings.TrimSpace(r.PostFormValue("tz")),
		OpenFor: strings.TrimSpace(r.PostFormValue("open_for")), Channel: strings.TrimSpace(r.PostFormValue("channel"))}
	res := c.call(r, ss, "POST", "/v1/notify/rules", req)
	c.record(r, ss, site.Action{What: "notify rule add", Target: "notify rule " + req.Name, Detail: "channel " + req.Channel, Result: result(res)})
	c.done(w, r, ss, "/alarms/rules", fmt.Sprintf("Rule %s added.", req.Name), res.err())
}

func (c *console) notifyRuleStepForm(w http.ResponseWriter, r *http.Request, ss *session) {
	name, step := r.PathValue("name"), r.PathValue("step")
	method, path := "POST", "/v1/notify/rules/"+url.PathEscape(name)+"/"+step
	switch step {
	case "disable", "enable":
	case "remove":
		method, path = "DELETE", "/v1/notify/rules/"+url.PathEscape(name)
	default:
		c.errorPage(w, r, ss, http.StatusNotFound, fmt.Errorf("no such step %q: want disable, enable or remove", step))
		return
	}
	res := c.call(r, ss, method, path, nil)
	c.record(r, ss, site.Action{What: "notify rule " + step, Target: "notify rule " + name, Result: result(res)})
	c.done(w, r, ss, "/alarms/rules", fmt.Sprintf("Rule %s: %s done.", name, step), res.err())
}
