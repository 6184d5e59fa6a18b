package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fleetDoor is one door of a fleet: latchd itself (run, with -sim -join)
// in this process, on its own emulated hardware, data directory, identity
// and broker login. The fleet drives it as a person and its console
// would: commands on its standard input, its JSON lines read back.
type fleetDoor struct {
	id   string
	data string
	in   *io.PipeWriter
	done chan int // run's exit code

	mu      sync.Mutex
	cmdMu   sync.Mutex // one command line at a time
	fp      string     // the fingerprint it announced
	seq     uint64     // the last audit seq it printed
	events  map[string]int
	applied []fleetApplied // its applied views, in order
	access  int            // access decisions printed
	last    fleetLine      // the latest of them
	outbox  int            // the outbox its latest status line showed
	status  int            // status lines printed
	bad     []string       // lines that did not decode
	wake    chan struct{}  // closed and replaced at every line
}

// fleetApplied is a view the door applied: a delta or a snapshot, with the
// view seq it reached and when, by the door's clock.
type fleetApplied struct {
	seq uint64
	at  time.Time
}

// startFleetDoor runs door id of the site the join file names until ctx
// ends, with its data directory under dir and its operational log
// appended to stderr.
func startFleetDoor(ctx context.Context, join, dir, id string, stderr io.Writer) *fleetDoor {
	pr, pw := io.Pipe()
	d := &fleetDoor{id: id, data: filepath.Join(dir, id), in: pw, done: make(chan int, 1),
		events: make(map[string]int), wake: make(chan struct{})}
	args := []string{"-sim", "-join", join, "-door", id, "-data", d.data, "-log-format", "json", "-log-level", "error",
		"-journal-reserve-mib", "1"}
	go func() {
		code := run(ctx, args, pr, &lineSplitter{line: d.line}, stderr)
		pr.Close()
		d.done <- code
	}()
	return d
}

// send types one command line at the door's prompt.
func (d *fleetDoor) send(line string) error {
	d.cmdMu.Lock()
	defer d.cmdMu.Unlock()
	if _, err := io.WriteString(d.in, line+"\n"); err != nil {
		return fmt.Errorf("door %s: %q: %w", d.id, line, err)
	}
	return nil
}

// quit ends the door's prompt, and so its run.
func (d *fleetDoor) quit() { _ = d.in.Close() }

// fleetLine is what the fleet reads of a door's JSON line: an audit event
// (seq set) or a message (fingerprint maybe set).
type fleetLine struct {
	Seq         uint64    `json:"seq"`
	Time        time.Time `json:"time"`
	Type        string    `json:"type"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail"`
	UID         string    `json:"uid"`
	Fingerprint string    `json:"fingerprint"`
	Msg         string    `json:"msg"`
}

// line takes one line of the door's output.
func (d *fleetDoor) line(b []byte) {
	var l fleetLine
	err := json.Unmarshal(b, &l)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err != nil:
		d.bad = append(d.bad, string(b))
	case l.Fingerprint != "":
		d.fp = l.Fingerprint
	case l.Type == "message" && strings.HasPrefix(l.Msg, "status "):
		d.status++
		d.outbox = -1
		for _, kv := range strings.Fields(l.Msg) {
			if v, ok := strings.CutPrefix(kv, "outbox="); ok {
				d.outbox, _ = strconv.Atoi(v)
			}
		}
	case l.Seq != 0:
		d.seq = l.Seq
		d.events[l.Reason]++
		if l.Type == "access" {
			d.access++
			d.last = l
		}
		if l.Reason == "acl_applied" || l.Reason == "snapshot_applied" {
			// "delta 12: …" or "snapshot 12: …"
			f := strings.Fields(l.Detail)
			if len(f) >= 2 {
				if s, err := strconv.ParseUint(strings.TrimSuffix(f[1], ":"), 10, 64); err == nil {
					d.applied = append(d.applied, fleetApplied{seq: s, at: l.Time})
				}
			}
		}
	}
	close(d.wake)
	d.wake = make(chan struct{})
}

// state returns what the door printed so far, under its lock: cond reads
// it and must not keep it.
func (d *fleetDoor) state(cond func(d *fleetDoor) bool) (bool, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cond(d), d.wake
}

// await waits until cond holds of what the door printed, or ctx ends.
func (d *fleetDoor) await(ctx context.Context, cond func(d *fleetDoor) bool) error {
	for {
		ok, wake := d.state(cond)
		if ok {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("door %s: %w", d.id, context.Cause(ctx))
		}
	}
}

// decide taps uid at the door, keys pin# when pin is set, and returns the
// reason of the access decision the door recorded; the card is removed
// again.
func (d *fleetDoor) decide(ctx context.Context, uid, pin string) (string, error) {
	var n int
	d.state(func(d *fleetDoor) bool { n = d.access; return true })
	if err := d.send("tap " + uid); err != nil {
		return "", err
	}
	if pin != "" {
		if err := d.send("key " + pin + "#"); err != nil {
			return "", err
		}
	}
	var got fleetLine
	err := d.await(ctx, func(d *fleetDoor) bool {
		got = d.last
		return d.access > n
	})
	if err != nil {
		return "", err
	}
	if got.UID != uid {
		return "", fmt.Errorf("door %s: a decision for %s, want one for %s", d.id, got.UID, uid)
	}
	return got.Reason, d.send("remove")
}

// outboxNow asks the door for its status and returns the events its
// outbox holds: stored, not yet acknowledged by the site.
func (d *fleetDoor) outboxNow(ctx context.Context) (int, error) {
	var n int
	d.state(func(d *fleetDoor) bool { n = d.status; return true })
	if err := d.send("status"); err != nil {
		return 0, err
	}
	var out int
	err := d.await(ctx, func(d *fleetDoor) bool { out = d.outbox; return d.status > n })
	return out, err
}

// awaitApplied waits until the door has applied a view at seq or above,
// and returns when it first did, by its clock.
func (d *fleetDoor) awaitApplied(ctx context.Context, seq uint64) (time.Time, error) {
	var at time.Time
	err := d.await(ctx, func(d *fleetDoor) bool {
		for _, a := range d.applied {
			if a.seq >= seq {
				at = a.at
				return true
			}
		}
		return false
	})
	return at, err
}

// lineSplitter is an io.Writer that hands each whole line to line.
type lineSplitter struct {
	mu   sync.Mutex
	buf  []byte
	line func([]byte)
}

func (w *lineSplitter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// fleetJoin writes door id's join file: the site's broker and keys, with
// the door's own broker login.
func fleetJoin(dir, id string, j joinFile) (string, error) {
	j.Username = id
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, id+".join.json")
	return path, os.WriteFile(path, b, 0o600)
}
