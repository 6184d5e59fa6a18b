package main

import (
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
)

// The holders-and-cards CSV (docs/integrations.md): one row per card, or
// one row for a holder without a card; a header row names the columns, in
// any order. PINs, schedules and revocations are not in it: an import
// keeps a card's PIN hash and schedule and every revocation as they are.
//
//	holder_id     the holder's id (required)
//	holder_name   the holder's display name (the same on every row of a holder)
//	card_uid      the card's UID in hex; empty: a holder without a card
//	doors         door ids and group names the card opens, separated by spaces
//	valid_from    not valid before: RFC 3339, or YYYY-MM-DD (UTC midnight); empty: no limit
//	valid_until   not valid from then on, likewise
//	flags         card_only, extended_unlock, lockdown_override, separated by spaces
//
// A text field that starts with = + - @ a tab, a carriage return or ' is
// written with a ' before it, so that a spreadsheet does not run it as a
// formula; an import takes one leading ' away.

// csvColumns are the columns of the CSV, in the order export writes them.
var csvColumns = []string{"holder_id", "holder_name", "card_uid", "doors", "valid_from", "valid_until", "flags"}

// Import limits.
const (
	maxImportBytes  = 64 << 20
	maxImportRows   = 200000
	maxImportErrors = 100
)

// csvRow is one checked row.
type csvRow struct {
	line   int
	holder store.Holder
	card   *store.Card // nil: a holder without a card
}

// lineError is what is wrong with a line of the CSV.
type lineError struct {
	Line   int    `json:"line"`
	Column int    `json:"column,omitempty"` // 1-based; 0: the line as a whole
	Field  string `json:"field,omitempty"`
	Error  string `json:"error"`
}

func (e lineError) String() string {
	switch {
	case e.Column == 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Error)
	case e.Field == "":
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Error)
	}
	return fmt.Sprintf("line %d, column %d (%s): %s", e.Line, e.Column, e.Field, e.Error)
}

// csvFlags names the card flags as the CSV writes them.
var csvFlags = []csvFlag{
	{"card_only", func(f *store.Flags) *bool { return &f.CardOnly }},
	{"extended_unlock", func(f *store.Flags) *bool { return &f.ExtendedUnlock }},
	{"lockdown_override", func(f *store.Flags) *bool { return &f.LockdownOverride }},
}

// csvFlag is a card flag: its name and where it is.
type csvFlag struct {
	name string
	get  func(*store.Flags) *bool
}

// csvSafe writes a text field so that a spreadsheet shows it as text.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r'", rune(s[0])) {
		return "'" + s
	}
	return s
}

// csvText reads a text field csvSafe wrote.
func csvText(s string) string { return strings.TrimPrefix(s, "'") }

// parseCSVTime reads a validity bound: RFC 3339, or a date (UTC midnight).
func parseCSVTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a YYYY-MM-DD date", s)
}

// parseHoldersCSV reads and checks the CSV. It returns the rows, or the
// errors of every bad line it found (at most maxImportErrors).
func parseHoldersCSV(r io.Reader) ([]csvRow, []lineError) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	var errs []lineError
	add := func(e lineError) bool {
		errs = append(errs, e)
		return len(errs) < maxImportErrors
	}
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []lineError{{Line: 1, Error: "the file is empty: want a header row (" + strings.Join(csvColumns, ",") + ")"}}
		}
		return nil, []lineError{csvError(err)}
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\uFEFF"))
		switch {
		case !slices.Contains(csvColumns, h):
			add(lineError{Line: 1, Column: i + 1, Field: h, Error: fmt.Sprintf("unknown column %q: want %s", h, strings.Join(csvColumns, ", "))})
		case col[h] != 0:
			add(lineError{Line: 1, Column: i + 1, Field: h, Error: "column " + h + " twice"})
		}
		col[h] = i + 1
	}
	for _, c := range csvColumns {
		if col[c] == 0 {
			add(lineError{Line: 1, Error: "column " + c + " is missing"})
		}
	}
	if errs != nil {
		return nil, errs
	}
	var rows []csvRow
	holders := map[string]int{} // holder id → its first row
	cards := map[string]int{}   // UID → its line
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !add(csvError(err)) {
				break
			}
			if _, ok := errors.AsType[*csv.ParseError](err); ok {
				continue
			}
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rows) >= maxImportRows {
			add(lineError{Line: line, Error: fmt.Sprintf("more than %d rows: split the file", maxImportRows)})
			break
		}
		get := func(c string) string { return rec[col[c]-1] }
		fail := func(c, msg string) lineError { return lineError{Line: line, Column: col[c], Field: c, Error: msg} }
		row, e := checkRow(line, get, fail)
		if e == nil {
			if first, ok := holders[row.holder.ID]; ok && rows[first].holder.Name != row.holder.Name {
				e = append(e, fail("holder_name", fmt.Sprintf("holder %q is named %q on line %d", row.holder.ID, rows[first].holder.Name, rows[first].line)))
			}
			if row.card != nil {
				uid := fmt.Sprintf("%X", row.card.UID)
				if l, ok := cards[uid]; ok {
					e = append(e, fail("card_uid", fmt.Sprintf("card %s is on line %d too", uid, l)))
				}
				cards[uid] = line
			}
		}
		stop := false
		for _, x := range e {
			if !add(x) {
				stop = true
				break
			}
		}
		if stop {
			break
		}
		if e == nil {
			if _, ok := holders[row.holder.ID]; !ok {
				holders[row.holder.ID] = len(rows)
			}
			rows = append(rows, row)
		}
	}
	if errs != nil {
		return nil, errs
	}
	return rows, nil
}

// csvError is a CSV syntax error as a lineError.
func csvError(err error) lineError {
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		return lineError{Line: pe.Line, Error: fmt.Sprintf("at character %d: %v", pe.Column, pe.Err)}
	}
	return lineError{Error: err.Error()}
}

// checkRow checks one row's fields.
func checkRow(line int, get func(string) string, fail func(col, msg string) lineError) (csvRow, []lineError) {
	var errs []lineError
	row := csvRow{line: line, holder: store.Holder{ID: csvText(get("holder_id")), Name: csvText(get("holder_name"))}}
	if row.holder.ID == "" {
		errs = append(errs, fail("holder_id", "the holder id is missing"))
	} else if err := checkText("holder id", row.holder.ID, 255); err != nil {
		errs = append(errs, fail("holder_id", err.Error()))
	}
	if err := checkText("holder name", row.holder.Name, 255); err != nil {
		errs = append(errs, fail("holder_name", err.Error()))
	}
	uidText := strings.TrimSpace(get("card_uid"))
	if uidText == "" {
		for _, c := range []string{"doors", "valid_from", "valid_until", "flags"} {
			if get(c) != "" {
				errs = append(errs, fail(c, "a row without a card_uid has no "+c))
			}
		}
		return row, errs
	}
	c := &store.Card{HolderID: row.holder.ID}
	uid, err := hex.DecodeString(strings.ReplaceAll(uidText, ":", ""))
	if err != nil || store.CheckCardKey(uid) != nil {
		errs = append(errs, fail("card_uid", fmt.Sprintf("%q is not a UID of 4, 7 or 10 bytes in hex (like 04A1B2C3), or a keypad code's key of 8", uidText)))
	}
	c.UID = uid
	for d := range strings.FieldsSeq(get("doors")) {
		if err := checkText("door", d, 255); err != nil {
			errs = append(errs, fail("doors", err.Error()))
			break
		}
		c.Doors = append(c.Doors, d)
	}
	if len(c.Doors) > 256 {
		errs = append(errs, fail("doors", fmt.Sprintf("%d doors, limit 256", len(c.Doors))))
	}
	for _, t := range []struct {
		col string
		p   *time.Time
	}{{"valid_from", &c.ValidFrom}, {"valid_until", &c.ValidUntil}} {
		v, err := parseCSVTime(strings.TrimSpace(get(t.col)))
		if err != nil {
			errs = append(errs, fail(t.col, err.Error()))
		}
		*t.p = v
	}
	if !c.ValidFrom.IsZero() && !c.ValidUntil.IsZero() && !c.ValidFrom.Before(c.ValidUntil) {
		errs = append(errs, fail("valid_until", "valid_until is not after valid_from"))
	}
	for f := range strings.FieldsSeq(get("flags")) {
		i := slices.IndexFunc(csvFlags, func(x csvFlag) bool { return x.name == f })
		if i < 0 {
			errs = append(errs, fail("flags", fmt.Sprintf("unknown flag %q: want card_only, extended_unlock, lockdown_override", f)))
			continue
		}
		*csvFlags[i].get(&c.Flags) = true
	}
	row.card = c
	return row, errs
}

// writeHoldersCSV writes holders and their cards as the CSV; cardsOf
// returns a holder's cards. A door name with a space cannot be written.
func writeHoldersCSV(w io.Writer, holders []store.Holder, cardsOf func(id string) ([]store.Card, error)) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns); err != nil {
		return err
	}
	for _, h := range holders {
		cs, err := cardsOf(h.ID)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			if err := cw.Write([]string{csvSafe(h.ID), csvSafe(h.Name), "", "", "", "", ""}); err != nil {
				return err
			}
		}
		for _, c := range cs {
			rec, err := cardRecord(h, &c)
			if err != nil {
				return err
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// cardRecord is a card's row.
func cardRecord(h store.Holder, c *store.Card) ([]string, error) {
	for _, d := range c.Doors {
		if strings.ContainsFunc(d, func(r rune) bool { return r == ' ' || r == '\t' }) || d == "" {
			return nil, fmt.Errorf("card %X: door %q has a space: the CSV cannot hold it", c.UID, d)
		}
	}
	var flags []string
	for _, f := range csvFlags {
		if *f.get(&c.Flags) {
			flags = append(flags, f.name)
		}
	}
	tm := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return []string{csvSafe(h.ID), csvSafe(h.Name), fmt.Sprintf("%X", c.UID), strings.Join(c.Doors, " "),
		tm(c.ValidFrom), tm(c.ValidUntil), strings.Join(flags, " ")}, nil
}

// diffItem is one holder or card an import adds, changes or removes.
type diffItem struct {
	ID     string   `json:"id"`               // a holder id, or a card UID
	Line   int      `json:"line,omitempty"`   // its line in the file
	Fields []string `json:"fields,omitempty"` // what changes
}

// diffSet is what an import does to holders, or to cards.
type diffSet struct {
	Add    []diffItem `json:"add"`
	Change []diffItem `json:"change"`
	Remove []diffItem `json:"remove"`
}

func (d diffSet) empty() bool { return len(d.Add)+len(d.Change)+len(d.Remove) == 0 }

// importDiff is what an import of the CSV would change, or changed.
type importDiff struct {
	ACLSeq  uint64      `json:"acl_seq"` // the allowlist it was computed against
	DryRun  bool        `json:"dry_run"`
	Sync    bool        `json:"sync"`
	Holders diffSet     `json:"holders"`
	Cards   diffSet     `json:"cards"`
	Errors  []lineError `json:"errors,omitempty"`
	Seq     uint64      `json:"seq,omitempty"` // the change it was committed as
	Warning string      `json:"warning,omitempty"`
}

func (d *importDiff) summary() string {
	return fmt.Sprintf("holders: %d to add, %d to change, %d to remove; cards: %d to add, %d to change, %d to remove",
		len(d.Holders.Add), len(d.Holders.Change), len(d.Holders.Remove), len(d.Cards.Add), len(d.Cards.Change), len(d.Cards.Remove))
}

// diffImport compares the rows with the allowlist sn and returns the diff
// and the ops that make it: holders upserted, then cards, then (sync)
// cards removed, then holders removed. A card listed under another holder
// than its own is an error of its line.
func diffImport(rows []csvRow, sn store.Snapshot, sync bool) (importDiff, []store.Op) {
	d := importDiff{ACLSeq: sn.Seq, Sync: sync}
	holders := make(map[string]store.Holder, len(sn.Holders))
	for _, h := range sn.Holders {
		holders[h.ID] = h
	}
	cards := make(map[string]store.Card, len(sn.Cards))
	for _, c := range sn.Cards {
		cards[string(c.UID)] = c
	}
	var hops, cops []store.Op
	seenH := map[string]bool{}
	seenC := map[string]bool{}
	for _, row := range rows {
		if !seenH[row.holder.ID] {
			seenH[row.holder.ID] = true
			old, ok := holders[row.holder.ID]
			switch {
			case !ok:
				d.Holders.Add = append(d.Holders.Add, diffItem{ID: row.holder.ID, Line: row.line})
				h := row.holder
				hops = append(hops, store.Op{Kind: store.OpUpsertHolder, Holder: &h})
			case old.Name != row.holder.Name:
				d.Holders.Change = append(d.Holders.Change, diffItem{ID: row.holder.ID, Line: row.line, Fields: []string{"name"}})
				h := old
				h.Name = row.holder.Name
				hops = append(hops, store.Op{Kind: store.OpUpsertHolder, Holder: &h})
			}
		}
		if row.card == nil {
			continue
		}
		uid := fmt.Sprintf("%X", row.card.UID)
		seenC[string(row.card.UID)] = true
		old, ok := cards[string(row.card.UID)]
		if !ok {
			d.Cards.Add = append(d.Cards.Add, diffItem{ID: uid, Line: row.line})
			c := *row.card
			cops = append(cops, store.Op{Kind: store.OpUpsertCard, Card: &c})
			continue
		}
		if old.HolderID != row.card.HolderID {
			d.Errors = append(d.Errors, lineError{Line: row.line, Column: slices.Index(csvColumns, "card_uid") + 1, Field: "card_uid",
				Error: fmt.Sprintf("card %s belongs to holder %q: remove it there first", uid, old.HolderID)})
			continue
		}
		if fields := cardChanges(&old, row.card); len(fields) > 0 {
			d.Cards.Change = append(d.Cards.Change, diffItem{ID: uid, Line: row.line, Fields: fields})
			c := old
			c.Doors, c.ValidFrom, c.ValidUntil, c.Flags = row.card.Doors, row.card.ValidFrom, row.card.ValidUntil, row.card.Flags
			cops = append(cops, store.Op{Kind: store.OpUpsertCard, Card: &c})
		}
	}
	ops := append(hops, cops...)
	if sync {
		for _, c := range sn.Cards {
			if !seenC[string(c.UID)] {
				d.Cards.Remove = append(d.Cards.Remove, diffItem{ID: fmt.Sprintf("%X", c.UID)})
				ops = append(ops, store.Op{Kind: store.OpDeleteCard, UID: bytes.Clone(c.UID)})
			}
		}
		for _, h := range sn.Holders {
			if !seenH[h.ID] {
				d.Holders.Remove = append(d.Holders.Remove, diffItem{ID: h.ID})
				ops = append(ops, store.Op{Kind: store.OpDeleteHolder, HolderID: h.ID})
			}
		}
	}
	return d, ops
}

// cardChanges names the fields of a card the CSV sets that differ.
func cardChanges(old, new *store.Card) []string {
	var out []string
	if !slices.Equal(old.Doors, new.Doors) {
		out = append(out, "doors")
	}
	if !old.ValidFrom.Equal(new.ValidFrom) {
		out = append(out, "valid_from")
	}
	if !old.ValidUntil.Equal(new.ValidUntil) {
		out = append(out, "valid_until")
	}
	if old.Flags != new.Flags {
		out = append(out, "flags")
	}
	return out
}
