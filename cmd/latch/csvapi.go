package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Holders and cards as CSV (csvimport.go has the format):
//
//	GET  /v1/export?format=csv                    the CSV of every holder and card
//	POST /v1/import?dry_run=1&sync=1&if_seq=N     text/csv → importDiff
//
// An import is checked whole before anything changes: a bad line (the
// answer's errors, each with its line and column) or a card listed under
// another holder refuses all of it. A dry run answers with the diff and
// changes nothing; otherwise the diff is committed as one change of the
// allowlist, with one change-log entry. if_seq, the acl_seq of a dry
// run's answer, refuses the import if the allowlist changed since.

// rawBody is a request body the client sends as it is, not as JSON.
type rawBody struct {
	contentType string
	data        []byte
}

func (a *api) csvRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/export", a.exportHolders)
	m.HandleFunc("POST /v1/import", a.importHolders)
}

func (a *api) exportHolders(w http.ResponseWriter, r *http.Request) {
	get, err := queryValues(r.URL.Query(), "format")
	if err == nil && get("format") != "csv" {
		err = fmt.Errorf("format %q: want csv", get("format"))
	}
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	sn, err := a.db.Snapshot()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	byHolder := map[string][]store.Card{}
	for _, c := range sn.Cards {
		byHolder[c.HolderID] = append(byHolder[c.HolderID], c)
	}
	var buf bytes.Buffer
	err = writeHoldersCSV(&buf, sn.Holders, func(id string) ([]store.Card, error) { return byHolder[id], nil })
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Latch-ACL-Seq", strconv.FormatUint(sn.Seq, 10))
	_, _ = w.Write(buf.Bytes())
}

// importQuery is an import's query.
type importQuery struct {
	dryRun, sync bool
	ifSeq        uint64 // 0: whatever the allowlist is
}

func decodeImportQuery(q url.Values) (importQuery, error) {
	var iq importQuery
	get, err := queryValues(q, "dry_run", "sync", "if_seq")
	if err != nil {
		return iq, err
	}
	for _, f := range []struct {
		k string
		p *bool
	}{{"dry_run", &iq.dryRun}, {"sync", &iq.sync}} {
		switch get(f.k) {
		case "", "0", "false":
		case "1", "true":
			*f.p = true
		default:
			return iq, fmt.Errorf("%s %q: want 1 or 0", f.k, get(f.k))
		}
	}
	if s := get("if_seq"); s != "" {
		if iq.ifSeq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return iq, fmt.Errorf("if_seq %q: want an ACL seq", s)
		}
	}
	return iq, nil
}

func (a *api) importHolders(w http.ResponseWriter, r *http.Request) {
	iq, err := decodeImportQuery(r.URL.Query())
	target := "holders and cards (CSV)"
	if err != nil {
		a.describe(r, target, nil, "")
		a.failErr(w, r, badRequest(err))
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBytes))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		err = fmt.Errorf("%w: limit %d bytes", errTooLarge, maxImportBytes)
	}
	if err != nil {
		a.describe(r, target, nil, "")
		a.failErr(w, r, err)
		return
	}
	rows, lineErrs := parseHoldersCSV(bytes.NewReader(b))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.describe(r, target, nil, "")
	sn, err := a.db.Snapshot()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if iq.ifSeq != 0 && iq.ifSeq != sn.Seq {
		a.failErr(w, r, fmt.Errorf("the allowlist changed since the dry run (change %d, now %d): run the import again: %w", iq.ifSeq, sn.Seq, site.ErrConflict))
		return
	}
	d := importDiff{ACLSeq: sn.Seq, Sync: iq.sync, Errors: lineErrs}
	var ops []store.Op
	if lineErrs == nil {
		d, ops = diffImport(rows, sn, iq.sync)
	}
	d.DryRun = iq.dryRun
	detail := d.summary()
	if iq.dryRun {
		detail = "dry run: " + detail
	}
	if d.Errors != nil {
		detail = fmt.Sprintf("%d lines refused, nothing imported", len(d.Errors))
	}
	if rec := a.recording(r); rec != nil {
		rec.Entry.Detail = detail
	}
	switch {
	case d.Errors != nil && !iq.dryRun:
		msgs := make([]string, 0, len(d.Errors))
		for _, e := range d.Errors {
			msgs = append(msgs, e.String())
		}
		a.failErr(w, r, badRequest(fmt.Errorf("%d lines refused, nothing imported: %s", len(d.Errors), strings.Join(msgs, "; "))))
		return
	case iq.dryRun || len(ops) == 0:
		writeJSON(w, http.StatusOK, d)
		return
	}
	res, err := a.commitOps(r, ops...)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	d.Seq, d.Warning = res.Seq, res.Warning
	a.log.Info("import committed", "seq", d.Seq, "ops", len(ops), "diff", d.summary())
	writeJSON(w, http.StatusOK, d)
}

// --- the CLI ---

func cmdExport(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "export")
	asCSV := c.fs.Bool("csv", false, "write CSV (required: the one format)")
	out := c.fs.String("out", "", "write to FILE, a new file put in place only when the export is whole (default: standard output)")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if !*asCSV || *c.json {
		return usagef("--csv is the one format")
	}
	if *out != "" {
		if _, err := os.Lstat(*out); err == nil {
			return fmt.Errorf("%s exists; an export never replaces a file", *out)
		}
	}
	raw, err := c.client().call(ctx, "GET", "/v1/export?format=csv", nil)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = e.stdout.Write(raw)
		return err
	}
	return createWhole(*out, func(w io.Writer) error { _, err := w.Write(raw); return err })
}

func cmdImport(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "import")
	dry := c.fs.Bool("dry-run", false, "show what the import would change, and change nothing")
	sync := c.fs.Bool("sync", false, "also remove the holders and cards the file does not list")
	pos, err := c.parse(args, 1, "FILE")
	if err != nil {
		return err
	}
	var data []byte
	if pos[0] == "-" {
		data, err = io.ReadAll(io.LimitReader(e.stdin, maxImportBytes+1))
	} else {
		data, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	q := url.Values{"dry_run": {"1"}}
	if *sync {
		q.Set("sync", "1")
	}
	body := rawBody{contentType: "text/csv", data: data}
	raw, err := c.client().call(ctx, "POST", "/v1/import?"+q.Encode(), body)
	if err != nil {
		return err
	}
	var d importDiff
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	if *c.json && (*dry || d.Errors != nil) {
		_, err := e.stdout.Write(raw)
		if err == nil && d.Errors != nil {
			err = fmt.Errorf("%d lines refused; nothing imported", len(d.Errors))
		}
		return err
	}
	if !*c.json {
		printDiff(e.stdout, &d)
	}
	if d.Errors != nil {
		for _, x := range d.Errors {
			fmt.Fprintf(e.stderr, "%s: %s\n", pos[0], x)
		}
		return fmt.Errorf("%d lines refused; nothing imported", len(d.Errors))
	}
	if *dry || (d.Holders.empty() && d.Cards.empty()) {
		return nil
	}
	q.Del("dry_run")
	q.Set("if_seq", strconv.FormatUint(d.ACLSeq, 10))
	if raw, err = c.client().call(ctx, "POST", "/v1/import?"+q.Encode(), body); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("latch service: answer: %w", err)
	}
	if *c.json {
		_, err := e.stdout.Write(raw)
		return err
	}
	fmt.Fprintf(e.stdout, "imported as change %d\n", d.Seq)
	if d.Warning != "" {
		fmt.Fprintln(e.stderr, "latch: "+d.Warning)
	}
	return nil
}

// printDiff shows an import's diff: a line per holder and card, then the
// counts.
func printDiff(w io.Writer, d *importDiff) {
	for _, s := range []struct {
		what string
		set  diffSet
	}{{"holder", d.Holders}, {"card", d.Cards}} {
		for _, k := range []struct {
			mark  string
			items []diffItem
		}{{"+", s.set.Add}, {"~", s.set.Change}, {"-", s.set.Remove}} {
			for _, it := range k.items {
				line := ""
				if it.Line != 0 {
					line = fmt.Sprintf("  (line %d)", it.Line)
				}
				fields := ""
				if len(it.Fields) > 0 {
					fields = " " + strings.Join(slices.Clone(it.Fields), ",")
				}
				fmt.Fprintf(w, "%s %s %s%s%s\n", k.mark, s.what, it.ID, fields, line)
			}
		}
	}
	verb := "would change"
	if !d.DryRun {
		verb = "changes"
	}
	fmt.Fprintf(w, "import %s %s\n", verb, d.summary())
}
