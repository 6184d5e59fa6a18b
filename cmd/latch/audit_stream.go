package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// The streams of the collected audit log. GET /v1/audit/tail sends
// events in the order the site stored them (store/site's arrival order),
// one JSON line each with its arrival cursor, and with follow=1 keeps
// sending what is stored next until the client goes away or the service
// stops. GET /v1/audit/export sends every event an audit query's filters
// select, in time order, as CSV or JSON lines, with the count in a
// trailer once the export is whole.

const (
	// tailPoll is how often a following stream looks for new events.
	tailPoll = time.Second
	// defaultTailN and maxTailN bound how many stored events a tail
	// starts with.
	defaultTailN = 20
	maxTailN     = maxAuditLimit
	// exportTrailer carries the number of events of an export written
	// whole.
	exportTrailer = "Latch-Export-Events"
	// maxLine is the longest line a client reads from a stream: an
	// event's strings are 64 KiB each at most.
	maxLine = 1 << 20
)

// auditLine is one collected event as a tail and a JSON lines export
// write it: every field of the event as the door hashed it, so that the
// line can be verified again; the door it was collected from when the
// event names another or none; and in a tail its arrival cursor, to
// resume after.
type auditLine struct {
	Cursor uint64 `json:"cursor,omitempty"`
	store.Event
	CollectedFrom string `json:"collected_from,omitempty"`
}

func newAuditLine(cursor uint64, door string, e *store.Event) auditLine {
	l := auditLine{Cursor: cursor, Event: *e}
	if door != e.Door {
		l.CollectedFrom = door
	}
	return l
}

// door is the door the event was collected from.
func (l *auditLine) door() string {
	if l.CollectedFrom != "" {
		return l.CollectedFrom
	}
	return l.Door
}

// streamLine is a line of a tail as the client reads it: an event, or
// the error that ended the stream.
type streamLine struct {
	auditLine
	Error string `json:"error,omitempty"`
}

// pollClock starts what a following stream waits on between looks at the
// database: a channel that ticks, and its stop. nil is a time.Ticker;
// tests tick by hand.
type pollClock func() (<-chan time.Time, func())

func (p pollClock) start(every time.Duration) (<-chan time.Time, func()) {
	if p != nil {
		return p()
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// streams is what the API's following streams share.
type streams struct {
	clock pollClock // nil: look every tailPoll

	once     sync.Once
	stopping context.Context    // ends when the server begins to shut down ...
	stop     context.CancelFunc // ... which calls this
}

// errStopping ends a following stream when the service stops.
var errStopping = errors.New("latch serve is stopping")

// follow returns a context of r that also ends, with the cause
// errStopping, when r's server begins to shut down: http.Server.Shutdown
// waits for the requests under way, and a following stream would not end
// by itself.
func (s *streams) follow(r *http.Request) (context.Context, context.CancelFunc) {
	s.once.Do(func() {
		s.stopping, s.stop = context.WithCancel(context.Background())
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
			srv.RegisterOnShutdown(s.stop)
		}
	})
	ctx, cancel := context.WithCancelCause(r.Context())
	unhook := context.AfterFunc(s.stopping, func() { cancel(errStopping) })
	return ctx, func() {
		unhook()
		cancel(nil)
	}
}

// stopAll ends every following stream, of any server of the API: the
// service calls it when its servers begin to shut down.
func (s *streams) stopAll() {
	s.once.Do(func() { s.stopping, s.stop = context.WithCancel(context.Background()) })
	s.stop()
}

// arrivalStream reads collected events in arrival order.
type arrivalStream struct {
	db    *site.DB
	door  string           // only this door's events, unless empty
	after uint64           // start after this arrival cursor
	until uint64           // stop at this cursor (0: no bound)
	max   int              // stop after this many events (0: no bound)
	ticks <-chan time.Time // once caught up, look again at each tick; nil: stop
}

// run hands emit the stream's events, a page at a time, until its end:
// until, max, or, without ticks, the last event stored. With ticks it
// runs until ctx ends. It returns nil at the end, ctx's error when ctx
// ended first, or the first error of the database or of emit. No read
// transaction is open while emit runs.
func (s *arrivalStream) run(ctx context.Context, emit func([]site.Arrival) error) error {
	sent := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		as, next, err := s.db.EventsSince(s.after, 0, s.door)
		if err != nil {
			return err
		}
		done := false
		if s.until != 0 && next >= s.until {
			for len(as) > 0 && as[len(as)-1].Cursor > s.until {
				as = as[:len(as)-1]
			}
			done = true
		}
		if s.max > 0 && sent+len(as) >= s.max {
			as, done = as[:s.max-sent], true
		}
		if len(as) > 0 {
			if err := emit(as); err != nil {
				return err
			}
			sent += len(as)
		}
		if done {
			return nil
		}
		if next != s.after {
			s.after = next
			continue
		}
		if s.ticks == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ticks:
		}
	}
}

// tailReq is GET /v1/audit/tail's query.
type tailReq struct {
	after    uint64 // send the events after this arrival cursor ...
	hasAfter bool   // ... if given, else the last n
	n        int    // how many; with after and follow, every one after it
	door     string // only this door's events, unless empty
	follow   bool   // then keep sending what is stored next
}

// queryValues checks a URL query: only the keys allowed, each once, each
// short text. It returns a getter of the values ("" if absent).
func queryValues(q url.Values, allowed ...string) (func(string) string, error) {
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown query parameter %q", k)
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
		if err := checkText(k, v[0], 255); err != nil {
			return nil, err
		}
	}
	return q.Get, nil
}

// decodeTail reads GET /v1/audit/tail's query strictly.
func decodeTail(q url.Values) (tailReq, error) {
	r := tailReq{n: defaultTailN}
	get, err := queryValues(q, "after", "n", "door", "follow")
	if err != nil {
		return r, err
	}
	r.door = get("door")
	if s := get("after"); s != "" {
		if r.after, err = strconv.ParseUint(s, 10, 64); err != nil {
			return r, fmt.Errorf("after %q: want an arrival cursor (a decimal number)", s)
		}
		r.hasAfter = true
	}
	switch s := get("follow"); s {
	case "", "0", "false":
	case "1", "true":
		r.follow = true
	default:
		return r, fmt.Errorf("follow %q: want 1 or 0", s)
	}
	if s := get("n"); s != "" {
		if r.hasAfter && r.follow {
			return r, errors.New("n does not apply when following from a cursor: every event after it is sent")
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxTailN {
			return r, fmt.Errorf("n %q: want 0 to %d", s, maxTailN)
		}
		r.n = n
	}
	return r, nil
}

// auditTail is GET /v1/audit/tail.
func (a *api) auditTail(w http.ResponseWriter, r *http.Request) {
	req, err := decodeTail(r.URL.Query())
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	s := arrivalStream{db: a.db, door: req.door, after: req.after}
	switch {
	case req.hasAfter && !req.follow:
		s.max = req.n
		if req.n == 0 {
			w.Header().Set("Content-Type", "application/x-ndjson")
			return
		}
	case !req.hasAfter:
		after, end, err := a.db.TailFrom(req.n, req.door)
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		s.after = after
		if !req.follow {
			s.until = end
		}
	}
	ctx := r.Context()
	if req.follow {
		var stop context.CancelFunc
		ctx, stop = a.streams.follow(r)
		defer stop()
		ticks, stopTicks := a.streams.clock.start(tailPoll)
		defer stopTicks()
		s.ticks = ticks
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The header goes at once, so that a follower knows it is connected.
	// An error of the client's end (gone, or not reading) is werr.
	werr := flush()
	var rerr error
	if werr == nil {
		rerr = s.run(ctx, func(as []site.Arrival) error {
			for _, ar := range as {
				if werr = enc.Encode(newAuditLine(ar.Cursor, ar.Door, &ar.Event)); werr != nil {
					return werr
				}
			}
			werr = flush()
			return werr
		})
	}
	switch {
	case werr != nil || r.Context().Err() != nil:
		// The client went away.
	case errors.Is(context.Cause(ctx), errStopping):
		_ = enc.Encode(errorBody{Error: errStopping.Error()})
		_ = flush()
	case rerr != nil:
		a.log.Error("audit tail failed", "err", rerr)
		_ = enc.Encode(errorBody{Error: rerr.Error()})
		_ = flush()
	}
	a.log.Debug("audit tail ended", "follow", req.follow, "door", req.door, "by", operator(r))
}

// exportFormats are the formats of an export and their media types.
var exportFormats = map[string]string{
	"csv":   "text/csv; charset=utf-8",
	"jsonl": "application/x-ndjson",
}

// csvHeader names the columns of a CSV export: every field of an event.
var csvHeader = []string{"time", "clock", "boot", "door", "seq", "type", "reason", "uid", "holder", "holder_name", "detail", "prev", "hash"}

// spreadsheetSafe keeps a spreadsheet from reading a text cell as a
// formula (a holder name or a detail a door wrote can be anything): a cell
// starting with = + - @ or a tab or carriage return gets a ' before it, as
// spreadsheets show text. The JSON lines export has every field as the
// door hashed it.
func spreadsheetSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// decodeExport reads GET /v1/audit/export's query strictly: a format and
// the filters of an audit query, without a limit.
func decodeExport(q url.Values) (string, site.Filter, error) {
	rest := url.Values{}
	for k, v := range q {
		rest[k] = v
	}
	delete(rest, "format")
	if _, ok := rest["limit"]; ok {
		return "", site.Filter{}, errors.New("an export has no limit: it sends every event the filters select")
	}
	f, err := auditFilter(rest)
	if err != nil {
		return "", f, err
	}
	f.Limit = 0
	switch v := q["format"]; {
	case len(v) != 1:
		return "", f, errors.New("format: give it once, csv or jsonl")
	case exportFormats[v[0]] == "":
		return "", f, fmt.Errorf("format %q: want csv or jsonl", v[0])
	default:
		return v[0], f, nil
	}
}

// exportWriter writes the records of an export.
type exportWriter interface {
	write(r *site.Record) error
	flush() error
}

type csvExport struct {
	w   *csv.Writer
	row []string
}

func (c *csvExport) write(r *site.Record) error {
	e := &r.Event
	c.row = append(c.row[:0], e.Time.UTC().Format(time.RFC3339Nano), string(e.Clock), spreadsheetSafe(e.BootID), r.Door,
		strconv.FormatUint(e.Seq, 10), string(e.Type), string(e.Reason), e.UID, spreadsheetSafe(e.Holder),
		spreadsheetSafe(e.HolderName), spreadsheetSafe(e.Detail), e.Prev, e.Hash)
	return c.w.Write(c.row)
}

func (c *csvExport) flush() error {
	c.w.Flush()
	return c.w.Error()
}

type jsonlExport struct{ enc *json.Encoder }

func (j jsonlExport) write(r *site.Record) error {
	return j.enc.Encode(newAuditLine(0, r.Door, &r.Event))
}

func (jsonlExport) flush() error { return nil }

// newExportWriter returns the writer of format on w; a CSV export begins
// with its header.
func newExportWriter(format string, w io.Writer) (exportWriter, error) {
	if format == "csv" {
		c := &csvExport{w: csv.NewWriter(w)}
		return c, c.w.Write(csvHeader)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return jsonlExport{enc: enc}, nil
}

// sentWriter notes whether anything was written through it.
type sentWriter struct {
	w    io.Writer
	sent bool
}

func (s *sentWriter) Write(b []byte) (int, error) {
	s.sent = true
	return s.w.Write(b)
}

// auditExport is GET /v1/audit/export. It writes each record as Query
// hands it over; Query holds a read transaction only while it reads a
// page, never while the answer is written. The count goes in a trailer
// once the export is whole, so that a client can tell an export cut
// short from a complete one.
func (a *api) auditExport(w http.ResponseWriter, r *http.Request) {
	format, f, err := decodeExport(r.URL.Query())
	if err != nil {
		a.failErr(w, r, badRequest(err))
		return
	}
	w.Header().Set("Content-Type", exportFormats[format])
	w.Header().Set("Trailer", exportTrailer)
	sw := &sentWriter{w: w}
	bw := bufio.NewWriterSize(sw, 64<<10)
	out, err := newExportWriter(format, bw)
	n := 0
	if err == nil {
		for rec, qerr := range a.db.Query(f) {
			if qerr != nil {
				if !sw.sent {
					a.failErr(w, r, qerr)
					return
				}
				a.log.Error("audit export failed", "events", n, "err", qerr)
				return
			}
			if err = out.write(&rec); err != nil {
				break
			}
			if n++; n%1024 == 0 {
				if err = r.Context().Err(); err != nil {
					break
				}
			}
		}
	}
	if err == nil {
		if err = out.flush(); err == nil {
			err = bw.Flush()
		}
	}
	if err != nil {
		a.log.Info("audit export cut short", "events", n, "err", err)
		return
	}
	w.Header().Set(exportTrailer, strconv.Itoa(n))
	a.log.Info("audit export written", "events", n, "format", format, "by", operator(r))
}

// printable replaces control characters, which a door's free text could
// carry to a terminal or a log file, with U+FFFD.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// eventText is an event in one line for people, in the words of the
// door simulator's log: seq, type and reason, the door it was collected
// from, card, holder, detail, and whether the door's clock was synced.
func eventText(door string, e *store.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s door=%s", e.Seq, e.Type, e.Reason, door)
	for _, f := range []struct{ k, v, format string }{
		{"uid", e.UID, "%s"}, {"holder", e.Holder, "%s"}, {"name", e.HolderName, "%q"}, {"detail", e.Detail, "%q"},
	} {
		if f.v != "" {
			fmt.Fprintf(&b, " %s="+f.format, f.k, f.v)
		}
	}
	if e.Clock != store.TimeSynced {
		fmt.Fprintf(&b, " clock=%s", e.Clock)
	}
	return printable(b.String())
}

// auditFilterFlags adds the filters of an audit query to fs and returns
// what reads them, once parsed, as the API's query.
func auditFilterFlags(fs *flag.FlagSet) func() (url.Values, error) {
	strs := map[string]*string{}
	for _, k := range []string{"door", "holder", "uid", "type", "reason"} {
		strs[k] = fs.String(k, "", "only events with this "+k)
	}
	from := fs.String("from", "", "only events at or after: RFC 3339 time or YYYY-MM-DD")
	to := fs.String("to", "", "only events before: RFC 3339 time or YYYY-MM-DD")
	return func() (url.Values, error) {
		q := url.Values{}
		for k, v := range strs {
			if *v != "" {
				q.Set(k, *v)
			}
		}
		if u := *strs["uid"]; u != "" {
			uid, err := cmdUID(u)
			if err != nil {
				return nil, err
			}
			q.Set("uid", fmt.Sprintf("%X", uid))
		}
		for _, t := range []struct{ flag, k, v string }{{"--from", "from", *from}, {"--to", "to", *to}} {
			v, err := parseWhen(t.flag, t.v)
			if err != nil {
				return nil, err
			}
			if !v.IsZero() {
				q.Set(t.k, v.Format(time.RFC3339Nano))
			}
		}
		return q, nil
	}
}

func cmdAuditTail(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit tail")
	follow := c.fs.Bool("f", false, "keep following: print events as they are stored, until interrupted")
	door := c.fs.String("door", "", "only this door's events")
	n := c.fs.Int("n", defaultTailN, "print the last N events stored first")
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if *n < 0 || *n > maxTailN {
		return usagef("-n %d: want 0 to %d", *n, maxTailN)
	}
	q := url.Values{"n": {strconv.Itoa(*n)}}
	if *door != "" {
		q.Set("door", *door)
	}
	if *follow {
		q.Set("follow", "1")
	}
	resp, err := c.client().request(ctx, "GET", "/v1/audit/tail?"+q.Encode(), nil)
	if err != nil {
		if *follow && ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	err = readTail(resp.Body, func(raw []byte, l *auditLine) error {
		if *c.json {
			_, err := e.stdout.Write(raw)
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "%s %s\n", l.Time.Local().Format(time.RFC3339), eventText(l.door(), &l.Event))
		return err
	})
	switch {
	case *follow && ctx.Err() != nil:
		return nil // interrupted: the way a follow ends
	case err != nil:
		return err
	case *follow:
		return errors.New("the latch service ended the stream")
	}
	return nil
}

// readTail reads a tail's lines and hands each event and its raw line
// (with its newline) to fn. An error line from the service is the error.
func readTail(r io.Reader, fn func(raw []byte, l *auditLine) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			raw, err = readLongLine(br, raw)
		}
		if len(raw) > 0 && err == nil {
			var l streamLine
			if jerr := json.Unmarshal(raw, &l); jerr != nil {
				return fmt.Errorf("latch service: a line of the stream: %w", jerr)
			}
			if l.Error != "" {
				return errors.New(l.Error)
			}
			if ferr := fn(raw, &l.auditLine); ferr != nil {
				return ferr
			}
		}
		switch {
		case errors.Is(err, io.EOF) && len(raw) == 0:
			return nil
		case errors.Is(err, io.EOF):
			return errors.New("latch service: the stream ended within a line")
		case err != nil:
			return fmt.Errorf("latch service: read the stream: %w", err)
		}
	}
}

// readLongLine reads the rest of a line longer than br's buffer, up to
// maxLine bytes.
func readLongLine(br *bufio.Reader, start []byte) ([]byte, error) {
	line := append([]byte(nil), start...)
	for len(line) <= maxLine {
		more, err := br.ReadSlice('\n')
		line = append(line, more...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
	return nil, fmt.Errorf("a line of over %d bytes", maxLine)
}

func cmdAuditExport(ctx context.Context, e *env, args []string) error {
	c := newClientCmd(e, "audit export")
	format := c.fs.String("format", "", "csv or jsonl (required)")
	out := c.fs.String("out", "", "write to FILE, a new file put in place only when the export is whole (default: standard output)")
	filter := auditFilterFlags(c.fs)
	if _, err := c.parse(args, 0); err != nil {
		return err
	}
	if exportFormats[*format] == "" {
		return usagef("--format %q: want csv or jsonl", *format)
	}
	if *c.json {
		return usagef("--json does not apply: --format jsonl writes JSON lines")
	}
	q, err := filter()
	if err != nil {
		return err
	}
	q.Set("format", *format)
	if *out != "" {
		if _, err := os.Lstat(*out); err == nil {
			return fmt.Errorf("%s exists; an export never replaces a file", *out)
		}
	}
	start := time.Now()
	resp, err := c.client().request(ctx, "GET", "/v1/audit/export?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p := &exportProgress{csv: *format == "csv", start: start}
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = e.stderr
	}
	copyAll := func(w io.Writer) error {
		p.w = w
		if _, err := io.Copy(p, resp.Body); err != nil {
			return fmt.Errorf("export cut short after %d events: %w", p.events(), err)
		}
		p.clear()
		want := resp.Trailer.Get(exportTrailer)
		if want == "" {
			return fmt.Errorf("the service did not finish the export (%d events arrived); see its log", p.events())
		}
		if want != strconv.FormatInt(p.events(), 10) {
			return fmt.Errorf("the export holds %d events, the service sent %s", p.events(), want)
		}
		return nil
	}
	if *out != "" {
		err = createWhole(*out, copyAll)
	} else {
		err = copyAll(e.stdout)
	}
	p.clear()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "exported %d events, %.1f MiB in %.1fs\n", p.events(), float64(p.bytes)/(1<<20), time.Since(start).Seconds())
	return nil
}

// exportProgress counts what an export writes: bytes, and records (lines,
// but for newlines within quoted CSV fields). On a terminal it shows the
// counts on one line, rewritten at most five times a second.
type exportProgress struct {
	w       io.Writer
	csv     bool
	quoted  bool // within a quoted CSV field
	records int64
	bytes   int64
	tty     io.Writer // nil: no progress line
	start   time.Time
	shown   time.Time
}

func (p *exportProgress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	b = b[:n]
	p.bytes += int64(n)
	for {
		i := bytes.IndexByte(b, '\n')
		if p.csv {
			i = bytes.IndexAny(b, "\"\n")
		}
		if i < 0 {
			break
		}
		if b[i] == '"' {
			p.quoted = !p.quoted
		} else if !p.quoted {
			p.records++
		}
		b = b[i+1:]
	}
	if p.tty != nil && time.Since(p.shown) >= 200*time.Millisecond {
		p.shown = time.Now()
		fmt.Fprintf(p.tty, "\rexporting: %d events, %.1f MiB", p.events(), float64(p.bytes)/(1<<20))
	}
	return n, err
}

// events is the number of events written: records but the CSV header.
func (p *exportProgress) events() int64 {
	if p.csv && p.records > 0 {
		return p.records - 1
	}
	return p.records
}

// clear removes the progress line.
func (p *exportProgress) clear() {
	if p.tty != nil && !p.shown.IsZero() {
		fmt.Fprint(p.tty, "\r\033[K")
		p.shown = time.Time{}
	}
}

// createWhole writes dst through fill into a temporary file beside it,
// and puts it in place (never over a file) only if fill succeeded.
func createWhole(dst string, fill func(w io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".latch-export-*")
	if err != nil {
		return err
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	// A link, unlike a rename, fails if dst appeared meanwhile.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	return nil
}
