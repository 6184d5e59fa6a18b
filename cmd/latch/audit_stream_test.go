package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// doorEvents makes door's events first..last, linked from prev, one a
// minute from t, alternating the holders alice and bob and their cards.
func doorEvents(t testing.TB, door string, first, last uint64, prev string, at time.Time) []store.Event {
	t.Helper()
	var out []store.Event
	for seq := first; seq <= last; seq++ {
		h, uid := "alice", "04A1B2C3"
		if seq%2 == 0 {
			h, uid = "bob", "04B0B0B0"
		}
		e := store.Event{Seq: seq, Time: at.Add(time.Duration(seq) * time.Minute), Clock: store.TimeSynced, BootID: "b1",
			Door: door, Type: store.TypeAccess, Reason: store.ReasonGranted, UID: uid, Holder: h, HolderName: strings.ToUpper(h), Prev: prev}
		var err error
		if e.Hash, err = store.HashEvent(e); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// rehash recomputes the hashes of a chain after its events were edited.
func rehash(t testing.TB, evs []store.Event, prev string) {
	t.Helper()
	for i := range evs {
		evs[i].Prev = prev
		var err error
		if evs[i].Hash, err = store.HashEvent(evs[i]); err != nil {
			t.Fatal(err)
		}
		prev = evs[i].Hash
	}
}

var zeroHash = strings.Repeat("0", 64)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func addEvents(t testing.TB, db *site.DB, door string, evs ...store.Event) {
	t.Helper()
	if stored, _, _, err := db.AddEvents(door, evs, t0); err != nil || stored != len(evs) {
		t.Fatalf("add events of %s: %d of %d stored, %v", door, stored, len(evs), err)
	}
}

// storeSite stores events in a site made by latch init, before it is
// served: front 1..20 then lab 1..10, whose clock runs a day behind, so
// that arrival order is not time order.
func storeSite(t *testing.T) (*testSite, []store.Event, []store.Event) {
	t.Helper()
	s := initSite(t)
	db, err := site.Open(s.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	front := doorEvents(t, "front", 1, 20, zeroHash, t0)
	lab := doorEvents(t, "lab", 1, 10, zeroHash, t0.Add(-24*time.Hour))
	// A detail a CSV reader must take whole: quotes, a comma, a newline.
	lab[4].Detail = "held \"open\", then\nclosed"
	rehash(t, lab, zeroHash)
	addEvents(t, db, "front", front...)
	addEvents(t, db, "lab", lab...)
	return s, front, lab
}

// tailLines decodes the JSON lines of a tail.
func tailLines(t *testing.T, out string) []auditLine {
	t.Helper()
	var ls []auditLine
	for l := range strings.Lines(out) {
		var v auditLine
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ls = append(ls, v)
	}
	return ls
}

func lineNames(ls []auditLine) string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s/%d", l.door(), l.Seq))
	}
	return strings.Join(out, " ")
}

func TestAuditTailThroughServe(t *testing.T) {
	s, front, lab := storeSite(t)
	s.serve(t)

	// The last 20 stored: front 11..20, then lab 1..10.
	out := s.ok(t, "", "audit", "tail")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 20 || !strings.Contains(lines[0], "#11 access granted door=front uid=04A1B2C3 holder=alice name=\"ALICE\"") ||
		!strings.Contains(lines[19], "#10 access granted door=lab") {
		t.Fatalf("audit tail:\n%s", out)
	}
	if want := lab[0].Time.Local().Format(time.RFC3339) + " #1 access granted door=lab"; !strings.HasPrefix(lines[10], want) {
		t.Errorf("line 11 %q, want it to begin %q", lines[10], want)
	}
	// The door's free text is shown quoted, on its line.
	if !strings.Contains(lines[14], `detail="held \"open\", then\nclosed"`) {
		t.Errorf("line of lab 5: %q", lines[14])
	}

	ls := tailLines(t, s.ok(t, "", "audit", "tail", "-n", "3", "--door", "front", "--json"))
	if got := lineNames(ls); got != "front/18 front/19 front/20" {
		t.Fatalf("tail -n 3 --door front: %s", got)
	}
	if ls[0].Cursor != 18 || ls[2].Cursor != 20 || ls[2].Event.Hash != front[19].Hash {
		t.Errorf("front/20 as %+v", ls[2])
	}
	if out := s.ok(t, "", "audit", "tail", "-n", "0"); out != "" {
		t.Errorf("tail -n 0: %q", out)
	}
	if ls := tailLines(t, s.ok(t, "", "audit", "tail", "-n", "1000", "--json")); len(ls) != 30 {
		t.Errorf("tail -n 1000: %d lines, want 30", len(ls))
	}
	code, _, errs := s.cli(t, "", "audit", "tail", "-n", "-1")
	if code != 2 {
		t.Errorf("tail -n -1: exit %d, want 2", code)
	}
	oneLine(t, errs, "-n -1: want 0 to")
}

func TestAuditExportThroughServe(t *testing.T) {
	s, front, lab := storeSite(t)
	s.serve(t)

	file := filepath.Join(t.TempDir(), "audit.csv")
	code, out, errs := s.cli(t, "", "audit", "export", "--format", "csv", "--out", file)
	if code != 0 || out != "" {
		t.Fatalf("export csv: exit %d, stdout %q: %s", code, out, errs)
	}
	oneLine(t, errs, "exported 30 events, 0.0 MiB in ")
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 31 || strings.Join(rows[0], ",") != "time,clock,boot,door,seq,type,reason,uid,holder,holder_name,detail,prev,hash" {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	// Time order: lab's clock is a day behind, so lab comes first.
	l5 := lab[4]
	want := []string{l5.Time.Format(time.RFC3339Nano), string(l5.Clock), l5.BootID, "lab", "5", "access", "granted", l5.UID, l5.Holder, l5.HolderName, l5.Detail, l5.Prev, l5.Hash}
	if strings.Join(rows[5], "|") != strings.Join(want, "|") {
		t.Errorf("row 5:\n%q\nwant\n%q", rows[5], want)
	}
	if rows[30][3] != "front" || rows[30][12] != front[19].Hash {
		t.Errorf("last row %q", rows[30])
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file: %v, %v", fi.Mode(), err)
	}

	// JSON lines of one holder, on standard output.
	code, out, errs = s.cli(t, "", "audit", "export", "--format", "jsonl", "--holder", "bob", "--door", "front")
	if code != 0 {
		t.Fatalf("export jsonl: exit %d: %s", code, errs)
	}
	oneLine(t, errs, "exported 10 events")
	ls := tailLines(t, out)
	if len(ls) != 10 || ls[0].Door != "front" || ls[0].Holder != "bob" || ls[0].Seq != 2 || ls[0].Cursor != 0 || strings.Contains(out, `"cursor"`) {
		t.Errorf("export jsonl:\n%s", out)
	}
	var back store.Event
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &back); err != nil || back != front[1] {
		t.Errorf("a line read as an event: %+v, %v; want %+v", back, err, front[1])
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--format", "xml"}, 2, `--format "xml": want csv or jsonl`},
		{[]string{}, 2, `--format "": want csv or jsonl`},
		{[]string{"--format", "csv", "--limit", "3"}, 2, "flag provided but not defined: -limit"},
		{[]string{"--format", "jsonl", "--json"}, 2, "--json does not apply"},
		{[]string{"--format", "csv", "--out", file}, 1, "exists; an export never replaces a file"},
		{[]string{"--format", "csv", "--from", "yesterday"}, 2, "--from"},
	} {
		code, _, errs := s.cli(t, "", append([]string{"audit", "export"}, tc.args...)...)
		if code != tc.code {
			t.Errorf("export %v: exit %d, want %d (%s)", tc.args, code, tc.code, errs)
		}
		oneLine(t, errs, tc.want)
	}
}

// streamServer is the API on a unix socket over a database the test
// holds, so that it can store events while a stream is open, with a poll
// clock the test ticks.
type streamServer struct {
	db    *site.DB
	sock  string
	ticks chan time.Time
	logs  chan string
	srv   *http.Server
	// shutdown shuts the server down once and says how it went.
	shutdown func() error
}

// logLines sends each log line to a channel, dropping them when it is
// full.
type logLines chan string

func (l logLines) Write(b []byte) (int, error) {
	select {
	case l <- string(b):
	default:
	}
	return len(b), nil
}

func newStreamServer(t *testing.T) *streamServer {
	t.Helper()
	dir := t.TempDir()
	db, err := site.Open(filepath.Join(dir, "site.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{db: db, sock: filepath.Join(dir, "latch.sock"), ticks: make(chan time.Time), logs: make(chan string, 1000)}
	log := slog.New(slog.NewTextHandler(logLines(s.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := &api{db: db, log: log, now: time.Now, pins: cheapPINs}
	a.streams.clock = func() (<-chan time.Time, func()) { return s.ticks, func() {} }
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = &http.Server{Handler: a.handler(), ConnContext: connContext}
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()
	s.shutdown = sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	})
	t.Cleanup(func() {
		if err := s.shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		db.Close()
	})
	return s
}

// tick makes the following streams look at the database once (one
// stream takes each tick).
func (s *streamServer) tick(t *testing.T) {
	t.Helper()
	sendTick(t, s.ticks)
}

// sendTick ticks a poll clock, failing if nothing waits for it.
func sendTick(t *testing.T, ticks chan<- time.Time) {
	t.Helper()
	select {
	case ticks <- time.Now():
	case <-time.After(10 * time.Second):
		t.Fatal("nothing waited for a tick")
	}
}

// waitLog waits for a log line containing want.
func (s *streamServer) waitLog(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-s.logs:
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line with %q", want)
		}
	}
}

// follow runs `latch audit tail -f` with args against the server and
// returns its lines as they come, and what ends it and waits for its exit
// code and standard error.
func (s *streamServer) follow(t *testing.T, args ...string) (*bufio.Reader, func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var errb strings.Builder
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"audit", "tail", "-f", "--socket", s.sock}, args...), strings.NewReader(""), pw, &errb)
		pw.Close()
		done <- code
	}()
	stop := sync.OnceValues(func() (int, string) {
		cancel()
		_, _ = io.Copy(io.Discard, pr)
		return <-done, errb.String()
	})
	t.Cleanup(func() { stop() })
	return bufio.NewReader(pr), stop
}

// readLines reads n lines of a stream.
func readLines(t *testing.T, r *bufio.Reader, n int) []auditLine {
	t.Helper()
	var out strings.Builder
	for range n {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", out.String(), err)
		}
		out.WriteString(l)
	}
	return tailLines(t, out.String())
}

// latch audit tail -f prints the last events, then each event as it is
// stored, once, in the order stored, until it is interrupted; the stream
// on the service's side ends with it.
func TestAuditTailFollow(t *testing.T) {
	s := newStreamServer(t)
	front := doorEvents(t, "front", 1, 10, zeroHash, t0)
	lab := doorEvents(t, "lab", 1, 5, zeroHash, t0)
	addEvents(t, s.db, "front", front[:3]...)

	r, stop := s.follow(t, "--json", "-n", "2")
	if got := lineNames(readLines(t, r, 2)); got != "front/2 front/3" {
		t.Fatalf("first lines: %s", got)
	}
	// Events out of seq order: a gap, then filled.
	addEvents(t, s.db, "front", front[5:7]...)
	addEvents(t, s.db, "lab", lab[0])
	s.tick(t)
	if got := lineNames(readLines(t, r, 3)); got != "front/6 front/7 lab/1" {
		t.Fatalf("after a tick: %s", got)
	}
	addEvents(t, s.db, "front", front[3:5]...)
	s.tick(t)
	ls := readLines(t, r, 2)
	if got := lineNames(ls); got != "front/4 front/5" || ls[1].Cursor != 8 {
		t.Fatalf("after another tick: %s (cursor %d)", got, ls[1].Cursor)
	}
	// More than one page of events comes in one go.
	more := doorEvents(t, "lab", 2, 2500, lab[0].Hash, t0)
	addEvents(t, s.db, "lab", more...)
	s.tick(t)
	ls = readLines(t, r, len(more))
	if ls[0].Seq != 2 || ls[len(ls)-1].Seq != 2500 || ls[len(ls)-1].Cursor != 8+2499 {
		t.Fatalf("a page: %s ... %s", lineNames(ls[:1]), lineNames(ls[len(ls)-1:]))
	}

	code, errs := stop()
	if code != 0 || errs != "" {
		t.Errorf("interrupted: exit %d, stderr %q", code, errs)
	}
	s.waitLog(t, "audit tail ended")
}

// A following stream of one door, in people's words.
func TestAuditTailFollowDoor(t *testing.T) {
	s := newStreamServer(t)
	r, stop := s.follow(t, "--door", "lab")
	front := doorEvents(t, "front", 1, 3, zeroHash, t0)
	lab := doorEvents(t, "lab", 1, 2, zeroHash, t0)
	lab[1].Clock, lab[1].Detail = store.TimeUnsynced, "bell\a"
	rehash(t, lab, zeroHash)
	addEvents(t, s.db, "front", front[:1]...)
	addEvents(t, s.db, "lab", lab...)
	addEvents(t, s.db, "front", front[1:]...)
	s.tick(t)
	var got []string
	for range 2 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l[strings.Index(l, " ")+1:])
	}
	want := []string{
		"#1 access granted door=lab uid=04A1B2C3 holder=alice name=\"ALICE\"\n",
		"#2 access granted door=lab uid=04B0B0B0 holder=bob name=\"BOB\" detail=\"bell\\a\" clock=unsynced\n",
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("lines:\n%q\nwant\n%q", got, want)
	}
	stop()
}

// A stop of the service ends a following stream at once, and the CLI says
// why.
func TestAuditTailEndsAtShutdown(t *testing.T) {
	s := newStreamServer(t)
	addEvents(t, s.db, "front", doorEvents(t, "front", 1, 1, zeroHash, t0)...)
	r, stop := s.follow(t)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := s.shutdown(); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	if l, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Errorf("after shutdown: %q, %v", l, err)
	}
	code, errs := stop()
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	oneLine(t, errs, "latch audit tail: latch serve is stopping")
}

// A client that goes away ends its stream on the service's side.
func TestAuditTailClientGoesAway(t *testing.T) {
	s := newStreamServer(t)
	c := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.request(ctx, "GET", "/v1/audit/tail?follow=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	s.tick(t) // the stream is waiting
	cancel()
	resp.Body.Close()
	s.waitLog(t, "audit tail ended")
}

// The API: after a cursor, a page of n; refusals.
func TestAuditTailAPI(t *testing.T) {
	s := newStreamServer(t)
	addEvents(t, s.db, "front", doorEvents(t, "front", 1, 5, zeroHash, t0)...)
	c := newClient(&env{getenv: func(string) string { return "" }}, s.sock)
	get := func(q string) (string, error) {
		raw, err := c.call(context.Background(), "GET", "/v1/audit/tail?"+q, nil)
		return string(raw), err
	}
	out, err := get("after=2&n=2")
	if err != nil {
		t.Fatal(err)
	}
	if got := lineNames(tailLines(t, out)); got != "front/3 front/4" {
		t.Errorf("after=2&n=2: %s", got)
	}
	if out, err := get("after=5"); err != nil || out != "" {
		t.Errorf("after the end: %q, %v", out, err)
	}
	if out, err := get("after=0&n=0"); err != nil || out != "" {
		t.Errorf("none after the start: %q, %v", out, err)
	}
	// An event that names no door, collected from back: the line keeps
	// the event as hashed, and says where it came from.
	odd := doorEvents(t, "", 1, 1, zeroHash, t0)
	addEvents(t, s.db, "back", odd...)
	out, err = get("after=5")
	var e store.Event
	if err != nil || !strings.Contains(out, `"door":"",`) || !strings.HasSuffix(out, `,"collected_from":"back"}`+"\n") ||
		json.Unmarshal([]byte(out), &e) != nil || e != odd[0] {
		t.Errorf("an event of no door: %q, %v", out, err)
	}
	if h, err := store.HashEvent(e); err != nil || h != e.Hash {
		t.Errorf("the line's event hashes to %s, %v; it says %s", h, err, e.Hash)
	}
	for q, want := range map[string]string{
		"after=1&follow=1&n=2": "n does not apply",
		"after=-1":             "want an arrival cursor",
		"n=100001":             "want 0 to 100000",
		"follow=yes":           "want 1 or 0",
		"door=a&door=b":        "given 2 times",
		"since=1":              "unknown query parameter",
	} {
		if _, err := get(q); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
}

// An export with more events than a page and than the write buffer, with
// newlines within CSV fields, is counted and whole; one the service did not
// finish is refused and leaves no file.
func TestAuditExportWhole(t *testing.T) {
	s := newStreamServer(t)
	evs := doorEvents(t, "front", 1, 3000, zeroHash, t0)
	for i := range evs {
		if i%7 == 0 {
			evs[i].Detail = fmt.Sprintf("line one\nline \"%d\"", i)
		}
	}
	rehash(t, evs, zeroHash)
	addEvents(t, s.db, "front", evs...)
	for _, format := range []string{"csv", "jsonl"} {
		file := filepath.Join(t.TempDir(), "out."+format)
		code, _, errs := latch(t, "", "audit", "export", "--format", format, "--out", file, "--socket", s.sock)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, errs)
		}
		oneLine(t, errs, "exported 3000 events")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if format == "csv" {
			rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
			if err != nil || len(rows) != 3001 || rows[3000][4] != "3000" || rows[1][10] != evs[0].Detail {
				t.Errorf("csv: %d rows, %v", len(rows), err)
			}
		} else if ls := tailLines(t, string(b)); len(ls) != 3000 || ls[2999].Event.Hash != evs[2999].Hash {
			t.Errorf("jsonl: %d lines", len(ls))
		}
	}

	// A service that stops short: no trailer.
	dir := t.TempDir()
	sock := filepath.Join(dir, "short.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	short := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", exportTrailer)
		fmt.Fprintln(w, `{"door":"front","seq":1}`)
	})}
	go short.Serve(ln)
	defer short.Close()
	file := filepath.Join(dir, "out.jsonl")
	code, _, errs := latch(t, "", "audit", "export", "--format", "jsonl", "--out", file, "--socket", sock)
	if code != 1 {
		t.Errorf("export cut short: exit %d, want 1", code)
	}
	oneLine(t, errs, "the service did not finish the export (1 events arrived)")
	if _, err := os.Stat(file); err == nil {
		t.Error("an export cut short left a file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}

// The progress counter counts CSV records whatever the writes' bounds,
// newlines within quotes not counted.
func TestExportProgressCounts(t *testing.T) {
	var rec strings.Builder
	w := csv.NewWriter(&rec)
	w.Write(csvHeader)
	for i := range 50 {
		w.Write([]string{"a", fmt.Sprintf("x\n\"%d\"\n", i), "b,c"})
	}
	w.Flush()
	for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
		p := &exportProgress{w: io.Discard, csv: true}
		b := []byte(rec.String())
		for len(b) > 0 {
			n := min(chunk, len(b))
			p.Write(b[:n])
			b = b[n:]
		}
		if p.events() != 50 || p.bytes != int64(rec.Len()) {
			t.Errorf("writes of %d: %d events, %d bytes; want 50, %d", chunk, p.events(), p.bytes, rec.Len())
		}
	}
}
