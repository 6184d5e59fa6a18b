package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/latchdoor/latch/door"
	"github.com/latchdoor/latch/store"
)

// printer writes audit events and relay changes to the console, one line
// each, as text or JSON lines. It is safe for concurrent use.
type printer struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func newPrinter(w io.Writer, format string) (*printer, error) {
	switch format {
	case "text":
		return &printer{w: w}, nil
	case "json":
		return &printer{w: w, json: true}, nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// event prints one audit event.
func (p *printer) event(e store.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		b, err := json.Marshal(e)
		if err != nil {
			fmt.Fprintf(p.w, "{\"error\":%q}\n", err.Error())
			return
		}
		p.w.Write(append(b, '\n'))
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s #%d %s %s door=%s", e.Time.Format(time.RFC3339), e.Seq, e.Type, e.Reason, e.Door)
	if e.UID != "" {
		fmt.Fprintf(&sb, " uid=%s", e.UID)
	}
	if e.Holder != "" {
		fmt.Fprintf(&sb, " holder=%s", e.Holder)
	}
	if e.HolderName != "" {
		fmt.Fprintf(&sb, " name=%q", e.HolderName)
	}
	if e.Detail != "" {
		fmt.Fprintf(&sb, " detail=%q", e.Detail)
	}
	if e.Clock == store.TimeUnsynced {
		sb.WriteString(" clock=unsynced")
	}
	sb.WriteByte('\n')
	io.WriteString(p.w, sb.String())
}

// relay prints a relay state change.
func (p *printer) relay(at time.Time, unlocked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	state := "locked"
	if unlocked {
		state = "unlocked"
	}
	if p.json {
		fmt.Fprintf(p.w, "{\"time\":%q,\"type\":\"relay\",\"state\":%q}\n", at.Format(time.RFC3339Nano), state)
		return
	}
	fmt.Fprintf(p.w, "%s relay %s\n", at.Format(time.RFC3339), state)
}

// feedback prints a feedback pattern as it starts: what a person at the
// door sees and hears.
func (p *printer) feedback(at time.Time, pat door.Pattern) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		b, _ := json.Marshal(map[string]any{"time": at.Format(time.RFC3339Nano), "type": "feedback", "pattern": pat.Name, "looks": pat.Looks, "one_shot": pat.OneShot})
		p.w.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(p.w, "%s feedback %s (%s)\n", at.Format(time.RFC3339), pat.Looks, pat.Name)
}

// display prints the lines the door's display shows.
func (p *printer) display(at time.Time, lines [2]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		b, _ := json.Marshal(map[string]any{"time": at.Format(time.RFC3339Nano), "type": "display", "lines": lines})
		p.w.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(p.w, "%s display [%-16s] [%-16s]\n", at.Format(time.RFC3339), lines[0], lines[1])
}

// line prints a plain message (text mode) or a JSON object with "msg".
func (p *printer) line(format string, args ...any) {
	p.lineWith(nil, format, args...)
}

// lineWith is line with fields that a JSON object carries besides "msg",
// for a program to read; the text says them in its own words.
func (p *printer) lineWith(fields map[string]string, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if p.json {
		m := make(map[string]string, len(fields)+2)
		maps.Copy(m, fields)
		m["type"], m["msg"] = "message", msg
		b, _ := json.Marshal(m)
		p.w.Write(append(b, '\n'))
		return
	}
	fmt.Fprintln(p.w, msg)
}
