package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchdoor/latch/store/site"
)

// The change log in the console: its entries, newest first, with the
// record before and after each change, and a form to add a note to one.

// changelogData is the change-log page.
type changelogData struct {
	Who, Target string
	Rows        []site.ChangeEntry
	Before      uint64 // the seq to go on before, 0 at the start of the log
}

// changelogPageSize is how many entries one page shows.
const changelogPageSize = 100

func (c *console) changelogPage(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	d := changelogData{Who: strings.TrimSpace(q.Get("who")), Target: strings.TrimSpace(q.Get("target"))}
	f := site.ChangeFilter{Who: d.Who, Target: d.Target, Newest: true, Limit: changelogPageSize}
	if s := q.Get("before"); s != "" {
		var err error
		if f.Before, err = strconv.ParseUint(s, 10, 64); err != nil {
			c.errorPage(w, r, ss, http.StatusBadRequest, fmt.Errorf("before %q is not a number", s))
			return
		}
	}
	rows, last, err := c.a.db.Changes(f)
	if err != nil {
		c.errorPage(w, r, ss, http.StatusInternalServerError, err)
		return
	}
	d.Rows = rows
	if len(rows) == changelogPageSize && last > 1 {
		d.Before = last
	}
	c.page(w, r, ss, "changelog", "Change log", d)
}

// changelogNote adds a note on an entry, through the API: the note is an
// entry of its own.
func (c *console) changelogNote(w http.ResponseWriter, r *http.Request, ss *session) {
	seq := r.PathValue("seq")
	back := "/changelog"
	if who := r.PostFormValue("who"); who != "" {
		back += "?who=" + url.QueryEscape(who)
	}
	res := c.call(r, ss, "POST", "/v1/audit/changes/"+url.PathEscape(seq)+"/notes", noteReq{Text: strings.TrimSpace(r.PostFormValue("text"))})
	c.done(w, r, ss, back, fmt.Sprintf("Note added to entry #%s.", seq), res.err())
}
