package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/store/site"
)

// A review's evidence file: the completed review (group, owner, dates,
// every holder with the decision, the comment, who decided and when),
// the site and key id, the site's key chain, and the site's Ed25519
// signature over them with the key that signs allowlists. It is JSON or
// CSV (docs/access.md, "Evidence"):
//
//   - JSON: one object, indented as latch writes it: format, site, kid,
//     exported_at, review, key_chain, signature. The signature covers
//     "latch review evidence v1 json\n" and the compact JSON of the object
//     without its signature.
//   - CSV: rows of (name, value) for the review's fields, a key_rotation
//     row per rotation of the key chain, a header row and a row per
//     holder; the last row is (signature, base64). The signature covers
//     "latch review evidence v1 csv\n" and every byte before that row.
//
// A verifier reads the file strictly and writes it back again: a file
// that is not byte for byte what latch writes is refused, so any byte
// changed outside the signed bytes fails as surely as one inside them.

const (
	evidenceFormat = "latch review evidence v1"
	// maxEvidence bounds an evidence file.
	maxEvidence = 64 << 20
)

// evidence is what an evidence file says.
type evidence struct {
	Format     string            `json:"format"`
	Site       string            `json:"site"`
	Kid        string            `json:"kid"` // the key that signed it
	ExportedAt time.Time         `json:"exported_at"`
	Review     site.Review       `json:"review"`
	KeyChain   []json.RawMessage `json:"key_chain,omitempty"` // the site's signed key rotations, oldest first
}

// evidenceFile is the JSON form.
type evidenceFile struct {
	evidence
	Signature string `json:"signature"`
}

// evidenceError says which part of an evidence file fails.
type evidenceError struct {
	part string // "form", "key chain", "key", "signature"
	err  error
}

func (e *evidenceError) Error() string { return e.part + ": " + e.err.Error() }
func (e *evidenceError) Unwrap() error { return e.err }

func evidenceFail(part string, format string, args ...any) error {
	return &evidenceError{part: part, err: fmt.Errorf(format, args...)}
}

// signedEvidence is what the signature of ev in format covers; body is
// the CSV form's bytes before the signature row.
func signedEvidence(format string, ev *evidence, body []byte) ([]byte, error) {
	out := []byte(evidenceFormat + " " + format + "\n")
	if format == "csv" {
		return append(out, body...), nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	return append(out, b...), nil
}

// writeEvidence returns the evidence file of ev in format (json or csv),
// signed with key.
func writeEvidence(ev evidence, format string, key ed25519.PrivateKey) ([]byte, error) {
	ev.Format = evidenceFormat
	var body []byte
	if format == "csv" {
		body = evidenceCSV(&ev)
	}
	signed, err := signedEvidence(format, &ev, body)
	if err != nil {
		return nil, err
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, signed))
	if format == "csv" {
		return append(body, evidenceRow("signature", sig)...), nil
	}
	return evidenceJSON(&evidenceFile{evidence: ev, Signature: sig})
}

func evidenceJSON(f *evidenceFile) ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	return append(b, '\n'), nil
}

func evidenceRow(fields ...string) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(fields)
	w.Flush()
	return buf.Bytes()
}

func csvTimeNano(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// reviewCSVHeader heads the holder rows.
var reviewCSVHeader = []string{"holder", "name", "decision", "comment", "decided_by", "decided_at", "change", "cards"}

// evidenceMeta is the CSV form's (name, value) rows, in order.
func evidenceMeta(ev *evidence) [][2]string {
	r := &ev.Review
	return [][2]string{{"format", ev.Format}, {"site", ev.Site}, {"kid", ev.Kid}, {"exported_at", csvTimeNano(ev.ExportedAt)},
		{"review", strconv.FormatUint(r.ID, 10)}, {"group", r.Group}, {"owner", r.Owner}, {"doors", strings.Join(r.Doors, " ")},
		{"due", csvTimeNano(r.Due)}, {"started", csvTimeNano(r.Started)}, {"started_by", r.StartedBy}, {"acl_seq", strconv.FormatUint(r.Seq, 10)},
		{"completed", csvTimeNano(r.Completed)}, {"completed_by", r.CompletedBy}}
}

// evidenceCSV is the CSV form of ev before its signature row. Cells a
// spreadsheet would run as a formula start with '.
func evidenceCSV(ev *evidence) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for _, m := range evidenceMeta(ev) {
		_ = w.Write([]string{m[0], spreadsheetSafe(m[1])})
	}
	for _, k := range ev.KeyChain {
		_ = w.Write([]string{"key_rotation", string(k)})
	}
	_ = w.Write(reviewCSVHeader)
	for _, h := range ev.Review.Holders {
		cards, _ := json.Marshal(h.Cards)
		change := ""
		if h.Change != 0 {
			change = strconv.FormatUint(h.Change, 10)
		}
		row := []string{h.Holder, h.Name, string(h.Decision), h.Comment, h.DecidedBy, csvTimeNano(h.DecidedAt), change, string(cards)}
		for i := range row[:len(row)-1] {
			row[i] = spreadsheetSafe(row[i])
		}
		_ = w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

// parseEvidence reads an evidence file strictly: its content, the bytes
// its signature covers, and the signature.
func parseEvidence(b []byte) (ev evidence, signed, sig []byte, err error) {
	if len(b) > maxEvidence {
		return ev, nil, nil, evidenceFail("form", "%d bytes, limit %d", len(b), maxEvidence)
	}
	format, body := "json", []byte(nil)
	var sigText string
	if len(b) > 0 && b[0] == '{' {
		var f evidenceFile
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return ev, nil, nil, evidenceFail("form", "not an evidence file: %w", err)
		}
		ev, sigText = f.evidence, f.Signature
		if again, err := evidenceJSON(&f); err != nil || !bytes.Equal(again, b) {
			return ev, nil, nil, evidenceFail("form", "the file is not as latch wrote it: it was changed")
		}
	} else {
		format = "csv"
		if ev, body, sigText, err = parseEvidenceCSV(b); err != nil {
			return ev, nil, nil, err
		}
	}
	if ev.Format != evidenceFormat {
		return ev, nil, nil, evidenceFail("form", "format %q, want %q", ev.Format, evidenceFormat)
	}
	if sig, err = base64.StdEncoding.Strict().DecodeString(sigText); err != nil || len(sig) != ed25519.SignatureSize {
		return ev, nil, nil, evidenceFail("signature", "not a base64 Ed25519 signature")
	}
	signed, err = signedEvidence(format, &ev, body)
	return ev, signed, sig, err
}

// parseEvidenceCSV reads the CSV form: the evidence, the body before the
// signature row, and the signature.
func parseEvidenceCSV(b []byte) (ev evidence, body []byte, sig string, err error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return ev, nil, "", evidenceFail("form", "not an evidence file: it does not end with a line break")
	}
	cut := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	body, last := b[:cut], b[cut:]
	sig, ok := strings.CutPrefix(string(last), "signature,")
	if !ok || !strings.HasSuffix(sig, "\n") {
		return ev, nil, "", evidenceFail("form", "the last row is not the signature")
	}
	sig = strings.TrimSuffix(sig, "\n")
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return ev, nil, "", evidenceFail("form", "CSV: %w", err)
	}
	meta := evidenceMeta(&ev)
	if len(rows) < len(meta)+1 {
		return ev, nil, "", evidenceFail("form", "%d rows: too few for an evidence file", len(rows))
	}
	vals := map[string]string{}
	for i, m := range meta {
		if len(rows[i]) != 2 || rows[i][0] != m[0] {
			return ev, nil, "", evidenceFail("form", "row %d: want %s and its value", i+1, m[0])
		}
		vals[m[0]] = rows[i][1]
	}
	rows = rows[len(meta):]
	for len(rows) > 0 && len(rows[0]) == 2 && rows[0][0] == "key_rotation" {
		ev.KeyChain = append(ev.KeyChain, json.RawMessage(rows[0][1]))
		rows = rows[1:]
	}
	if len(rows) == 0 || !equalRow(rows[0], reviewCSVHeader) {
		return ev, nil, "", evidenceFail("form", "the holders' header row is missing")
	}
	if err := evidenceFromCSV(&ev, vals, rows[1:]); err != nil {
		return ev, nil, "", err
	}
	if !bytes.Equal(evidenceCSV(&ev), body) {
		return ev, nil, "", evidenceFail("form", "the file is not as latch wrote it: it was changed")
	}
	return ev, body, sig, nil
}

func equalRow(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// evidenceFromCSV fills ev from the CSV form's named values and holder
// rows.
func evidenceFromCSV(ev *evidence, vals map[string]string, holders [][]string) error {
	var err error
	num := func(k string) uint64 {
		n, perr := strconv.ParseUint(vals[k], 10, 64)
		if perr != nil && err == nil {
			err = evidenceFail("form", "%s %q is not a number", k, vals[k])
		}
		return n
	}
	tm := func(k, s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil && err == nil {
			err = evidenceFail("form", "%s %q is not an RFC 3339 time", k, s)
		}
		return t
	}
	ev.Format, ev.Site, ev.Kid, ev.ExportedAt = vals["format"], vals["site"], vals["kid"], tm("exported_at", vals["exported_at"])
	r := &ev.Review
	r.ID, r.Group, r.Owner, r.Seq = num("review"), vals["group"], vals["owner"], num("acl_seq")
	if vals["doors"] != "" {
		r.Doors = strings.Split(vals["doors"], " ")
	}
	r.Due, r.Started, r.StartedBy = tm("due", vals["due"]), tm("started", vals["started"]), vals["started_by"]
	r.Completed, r.CompletedBy = tm("completed", vals["completed"]), vals["completed_by"]
	for i, row := range holders {
		if len(row) != len(reviewCSVHeader) {
			return evidenceFail("form", "holder row %d has %d fields, want %d", i+1, len(row), len(reviewCSVHeader))
		}
		h := site.ReviewHolder{Holder: row[0], Name: row[1], Decision: site.Decision(row[2]), Comment: row[3], DecidedBy: row[4],
			DecidedAt: tm("decided_at", row[5])}
		if row[6] != "" {
			if h.Change, err = strconv.ParseUint(row[6], 10, 64); err != nil {
				return evidenceFail("form", "holder row %d: change %q is not a number", i+1, row[6])
			}
		}
		dec := json.NewDecoder(strings.NewReader(row[7]))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&h.Cards); derr != nil {
			return evidenceFail("form", "holder row %d: cards: %w", i+1, derr)
		}
		r.Holders = append(r.Holders, h)
	}
	return err
}

// verifyEvidence checks an evidence file against the site keys trusted
// (key id → public key): the form, the key chain from a trusted key to
// the key that signed, and the signature. It returns what the file says.
func verifyEvidence(b []byte, trusted map[string]ed25519.PublicKey) (evidence, error) {
	ev, signed, sig, err := parseEvidence(b)
	if err != nil {
		return ev, err
	}
	v, err := mqtt.NewVerifier(ev.Site, trusted)
	if err != nil {
		return ev, &evidenceError{part: "key", err: err}
	}
	for i, raw := range ev.KeyChain {
		var env bytes.Buffer
		if err := json.Compact(&env, raw); err != nil {
			return ev, evidenceFail("key chain", "rotation %d: %w", i+1, err)
		}
		m, kid, err := v.Open(env.Bytes(), mqtt.KindKeyRotation)
		if err != nil {
			return ev, evidenceFail("key chain", "rotation %d: %w", i+1, err)
		}
		if _, err := v.Rotate(m.(*mqtt.KeyRotation), kid); err != nil {
			return ev, evidenceFail("key chain", "rotation %d: %w", i+1, err)
		}
	}
	pub, retireAt, err := v.PublicKey(ev.Kid)
	if err != nil {
		return ev, evidenceFail("key", "%w (trusted: %s)", err, strings.Join(v.KeyIDs(), ", "))
	}
	if !retireAt.IsZero() && !ev.ExportedAt.Before(retireAt) {
		return ev, evidenceFail("key", "key %s signs nothing from %s on, and the file says it was exported %s",
			ev.Kid, retireAt.UTC().Format(time.RFC3339), ev.ExportedAt.UTC().Format(time.RFC3339))
	}
	if !ed25519.Verify(pub, signed, sig) {
		return ev, evidenceFail("signature", "does not verify with key %s: the file was changed after it was signed", ev.Kid)
	}
	return ev, nil
}

// reviewEvidence answers a completed review's evidence file, signed with
// the site key in use.
func (a *api) reviewEvidence(w http.ResponseWriter, r *http.Request) {
	id, ok := a.reviewID(w, r)
	if !ok {
		return
	}
	format := r.URL.Query().Get("format")
	if format != "json" && format != "csv" {
		a.failErr(w, r, badRequest(fmt.Errorf("format %q: want json or csv", format)))
		return
	}
	rv, err := a.db.Review(id)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	if !rv.Done() {
		a.failErr(w, r, fmt.Errorf("review %d is not completed: its evidence is written once it is: %w", id, site.ErrConflict))
		return
	}
	if a.keys == nil {
		a.fail(w, r, http.StatusServiceUnavailable, errors.New("the service has no site key to sign with"))
		return
	}
	chain, err := a.db.KeyChain()
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	a.keys.mu.Lock()
	key := *a.keys.key
	a.keys.mu.Unlock()
	out, err := writeEvidence(evidence{Site: key.Site, Kid: key.Kid, ExportedAt: a.now().UTC(), Review: rv, KeyChain: chain}, format, key.Key)
	if err != nil {
		a.failErr(w, r, err)
		return
	}
	ct := "application/json"
	if format == "csv" {
		ct = "text/csv; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(out)
	a.log.Info("review evidence written", "review", id, "format", format, "bytes", len(out), "kid", key.Kid)
}

// --- the CLI ---

func cmdAuditVerifyEvidence(_ context.Context, e *env, args []string) error {
	fs := newFlags("audit verify-evidence")
	keys := map[string]string{}
	fs.Func("site-key", "a trusted site key, KID=BASE64 as in a door's [mqtt.trusted_keys] (repeatable)", func(s string) error {
		kid, b64, ok := strings.Cut(s, "=")
		if !ok {
			return errors.New("want KID=BASE64")
		}
		keys[kid] = b64
		return nil
	})
	keyFile := fs.String("key", "", "the site key file: trust its public half")
	pos, err := parseFlags(e, fs, args, 1, "FILE")
	if err != nil {
		return err
	}
	trusted, err := mqtt.ParsePublicKeys(keys)
	if err != nil {
		return usagef("--site-key: %v", err)
	}
	if *keyFile != "" {
		k, err := loadSiteKey(*keyFile)
		if err != nil {
			return err
		}
		trusted[k.Kid] = k.Key.Public().(ed25519.PublicKey)
	}
	if len(trusted) == 0 {
		return usagef("give --site-key KID=BASE64 (a key the doors trust) or --key FILE (the site key file)")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEvidence+1))
	if err != nil {
		return fmt.Errorf("evidence %s: %w", pos[0], err)
	}
	ev, err := verifyEvidence(b, trusted)
	if err != nil {
		return fmt.Errorf("evidence %s: FAILED: %w", pos[0], err)
	}
	kept, removed := 0, 0
	for _, h := range ev.Review.Holders {
		if h.Decision == site.DecisionRemove {
			removed++
		} else {
			kept++
		}
	}
	r := &ev.Review
	fmt.Fprintf(e.stdout, "evidence %s: OK: review %d of group %s, owner %s, completed %s by %s: %d holders, %d kept, %d removed; signed by site %s with key %s, exported %s\n",
		pos[0], r.ID, r.Group, r.Owner, r.Completed.UTC().Format(time.RFC3339), r.CompletedBy, len(r.Holders), kept, removed,
		ev.Site, ev.Kid, ev.ExportedAt.UTC().Format(time.RFC3339))
	return nil
}
