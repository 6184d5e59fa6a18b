package site

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/latchdoor/latch/store"
)

// Alarms: what the site raises when it stores a door event that needs a
// person (a forced door, a door held open, tamper, a reader or journal
// fault, a duress grant) and when a door stays offline. One alarm is
// open per door and kind: a repeat while it is open is counted on it.
// Some close themselves (a held door on its door_closed, a reader fault
// on its reader_ok, offline when the door is back); operators
// acknowledge, assign, note and resolve the others.

// AlarmKind is what an alarm is about: the reason of the door event that
// raised it, or AlarmOffline.
type AlarmKind string

// The alarm kinds.
const (
	AlarmDoorForced    AlarmKind = AlarmKind(store.ReasonDoorForced)
	AlarmDoorHeld      AlarmKind = AlarmKind(store.ReasonDoorHeld)
	AlarmTamper        AlarmKind = AlarmKind(store.ReasonTamper)
	AlarmReaderFault   AlarmKind = AlarmKind(store.ReasonReaderFault)
	AlarmJournalFault  AlarmKind = AlarmKind(store.ReasonJournalFault)
	AlarmGrantedDuress AlarmKind = AlarmKind(store.ReasonGrantedDuress)
	// AlarmOffline: nothing heard from the door for the site's offline
	// threshold (OfflineRule).
	AlarmOffline AlarmKind = "offline"
)

// AlarmKinds lists every kind, in the order of their default priority.
var AlarmKinds = []AlarmKind{AlarmDoorForced, AlarmGrantedDuress, AlarmTamper, AlarmOffline,
	AlarmReaderFault, AlarmJournalFault, AlarmDoorHeld}

// ParseAlarmKind returns the kind named s.
func ParseAlarmKind(s string) (AlarmKind, error) {
	if k := AlarmKind(s); slices.Contains(AlarmKinds, k) {
		return k, nil
	}
	names := make([]string, len(AlarmKinds))
	for i, k := range AlarmKinds {
		names[i] = string(k)
	}
	return "", fmt.Errorf("%w: alarm kind %q: want one of %s", ErrInvalid, s, strings.Join(names, ", "))
}

// AlarmOf says what a door event does to the door's alarms: the kind it
// raises, or the kind it closes (door_closed closes door_held, reader_ok
// closes reader_fault); both empty for any other event.
func AlarmOf(e *store.Event) (raises, closes AlarmKind) {
	switch e.Reason {
	case store.ReasonDoorForced, store.ReasonDoorHeld, store.ReasonTamper, store.ReasonReaderFault,
		store.ReasonJournalFault, store.ReasonGrantedDuress:
		return AlarmKind(e.Reason), ""
	case store.ReasonDoorClosed:
		return "", AlarmDoorHeld
	case store.ReasonReaderOK:
		return "", AlarmReaderFault
	}
	return "", ""
}

// Priority is how urgent an alarm is.
type Priority string

// The priorities, most urgent first.
const (
	PriorityCritical Priority = "critical"
	PriorityHigh     Priority = "high"
	PriorityNormal   Priority = "normal"
	PriorityLow      Priority = "low"
)

// ParsePriority returns the priority named s.
func ParsePriority(s string) (Priority, error) {
	switch p := Priority(s); p {
	case PriorityCritical, PriorityHigh, PriorityNormal, PriorityLow:
		return p, nil
	}
	return "", fmt.Errorf("%w: priority %q: want critical, high, normal or low", ErrInvalid, s)
}

// DefaultPriority is a kind's priority unless the site's configuration
// says otherwise.
func DefaultPriority(k AlarmKind) Priority {
	switch k {
	case AlarmDoorForced, AlarmGrantedDuress:
		return PriorityCritical
	case AlarmTamper, AlarmOffline:
		return PriorityHigh
	case AlarmReaderFault, AlarmJournalFault:
		return PriorityNormal
	}
	return PriorityLow
}

// AlarmState is where an alarm is in its handling.
type AlarmState string

// The states. Open and acknowledged alarms are open; resolved (by an
// operator) and cleared (by itself) alarms are closed.
const (
	AlarmOpen         AlarmState = "open"
	AlarmAcknowledged AlarmState = "acknowledged"
	AlarmResolved     AlarmState = "resolved"
	AlarmCleared      AlarmState = "cleared"
)

// AlarmNote is an operator's note on an alarm.
type AlarmNote struct {
	Time time.Time `json:"time"`
	Who  string    `json:"who"`
	Text string    `json:"text"`
}

// Alarm is one alarm: a kind at a door, from the first event that raised
// it to its close, with the repeats counted.
type Alarm struct {
	ID       uint64     `json:"id"`
	Kind     AlarmKind  `json:"kind"`
	Door     string     `json:"door"`
	Priority Priority   `json:"priority"`
	State    AlarmState `json:"state"`
	Opened   time.Time  `json:"opened"` // the site's clock when raised
	Last     time.Time  `json:"last"`   // the site's clock at the last repeat
	Count    int        `json:"count"`  // the events that raised it: 1, and a repeat each
	Seq      uint64     `json:"seq,omitempty"`
	LastSeq  uint64     `json:"last_seq,omitempty"` // the door's event seqs, first and last
	At       time.Time  `json:"at,omitzero"`        // the door's clock at the first event
	Detail   string     `json:"detail,omitempty"`
	// Since is, for offline, when the door was last heard before it went
	// away; Away, once it is back, how long it was away.
	Since    time.Time     `json:"since,omitzero"`
	Away     time.Duration `json:"away,omitempty"`
	AckBy    string        `json:"ack_by,omitempty"`
	AckAt    time.Time     `json:"ack_at,omitzero"`
	Assignee string        `json:"assignee,omitempty"`
	Notes    []AlarmNote   `json:"notes,omitempty"`
	Closed   time.Time     `json:"closed,omitzero"`
	ClosedBy string        `json:"closed_by,omitempty"` // the operator who resolved it; "" when it cleared
	// SnoozedUntil, while the site's clock is before it, keeps an open
	// alarm quiet: its repeats are counted (on Count, and on
	// SnoozeRepeats) but notify no one. Its end (EndSnoozes) brings it
	// back; an ack or a resolve ends it too (Unsnooze).
	SnoozedUntil  time.Time `json:"snoozed_until,omitzero"`
	SnoozedBy     string    `json:"snoozed_by,omitempty"`
	SnoozeRepeats int       `json:"snooze_repeats,omitempty"` // the repeats while snoozed
}

// IsOpen reports whether the alarm is open (open or acknowledged).
func (a *Alarm) IsOpen() bool { return a.State == AlarmOpen || a.State == AlarmAcknowledged }

// Snoozed reports whether the alarm is open and snoozed at now.
func (a *Alarm) Snoozed(now time.Time) bool { return a.IsOpen() && now.Before(a.SnoozedUntil) }

// Unsnooze ends the alarm's snooze, if any, forgetting its repeats: for
// an operator's step that takes the alarm in hand (an ack, a resolve).
func (a *Alarm) Unsnooze() { a.SnoozedUntil, a.SnoozedBy, a.SnoozeRepeats = time.Time{}, "", 0 }

// AlarmChange is what the site did to an alarm on its own: raised it,
// counted a repeat, cleared it, or ended its snooze.
type AlarmChange struct {
	What  string `json:"what"` // "raised", "repeated", "cleared" or "snooze ended"
	Alarm Alarm  `json:"alarm"`
	// Repeats, for a snooze ended, are the repeats counted while it was
	// snoozed.
	Repeats int `json:"repeats,omitempty"`
}

// Alarm changes.
const (
	AlarmRaised      = "raised"
	AlarmRepeated    = "repeated"
	AlarmClosed      = "cleared"
	AlarmSnoozeEnded = "snooze ended"
)

// Buckets and keys of the alarms, made by their first write.
var (
	bucketAlarms     = []byte("alarms")
	bucketAlarmIndex = []byte("alarm_index")
	keyAlarmCursor   = []byte("alarm_cursor")
)

// alarmIndexKey is a door's key and a kind: the index entry of the
// door's latest alarm of that kind.
func alarmIndexKey(door string, k AlarmKind) []byte { return append(doorKey(door), k...) }

func getAlarm(tx *bolt.Tx, id uint64) (Alarm, error) {
	var a Alarm
	b := tx.Bucket(bucketAlarms)
	if b == nil {
		return a, fmt.Errorf("alarm %d: %w", id, ErrNotFound)
	}
	v := b.Get(be64(id))
	if v == nil {
		return a, fmt.Errorf("alarm %d: %w", id, ErrNotFound)
	}
	if err := decodeJSON(v, &a); err != nil {
		return a, fmt.Errorf("alarm %d: %w", id, err)
	}
	return a, nil
}

func putAlarm(tx *bolt.Tx, a *Alarm) error {
	b, err := tx.CreateBucketIfNotExists(bucketAlarms)
	if err != nil {
		return err
	}
	ix, err := tx.CreateBucketIfNotExists(bucketAlarmIndex)
	if err != nil {
		return err
	}
	if a.ID == 0 {
		if a.ID, err = b.NextSequence(); err != nil {
			return err
		}
	}
	v, err := encodeJSON(a)
	if err != nil {
		return err
	}
	if err := b.Put(be64(a.ID), v); err != nil {
		return err
	}
	return ix.Put(alarmIndexKey(a.Door, a.Kind), be64(a.ID))
}

// latestAlarm returns the door's latest alarm of kind k (open or not).
func latestAlarm(tx *bolt.Tx, door string, k AlarmKind) (Alarm, bool, error) {
	ix := tx.Bucket(bucketAlarmIndex)
	if ix == nil {
		return Alarm{}, false, nil
	}
	v := ix.Get(alarmIndexKey(door, k))
	if len(v) != 8 {
		return Alarm{}, false, nil
	}
	a, err := getAlarm(tx, bytesU64(v))
	return a, err == nil, err
}

// raise raises an alarm of in's kind at in's door, or counts a repeat on
// the one open.
func raise(tx *bolt.Tx, in Alarm) (AlarmChange, error) {
	a, ok, err := latestAlarm(tx, in.Door, in.Kind)
	if err != nil {
		return AlarmChange{}, err
	}
	if ok && a.IsOpen() {
		if a.Snoozed(in.Opened) {
			a.SnoozeRepeats++
		}
		a.Count++
		a.Last, a.LastSeq = in.Opened, in.Seq
		return AlarmChange{What: AlarmRepeated, Alarm: a}, putAlarm(tx, &a)
	}
	a = in
	a.ID, a.State, a.Count, a.Last, a.LastSeq = 0, AlarmOpen, 1, in.Opened, in.Seq
	return AlarmChange{What: AlarmRaised, Alarm: a}, putAlarm(tx, &a)
}

// clearAlarm closes the door's open alarm of kind k by itself, if one is open.
func clearAlarm(tx *bolt.Tx, door string, k AlarmKind, now time.Time, detail string, away time.Duration) (AlarmChange, bool, error) {
	a, ok, err := latestAlarm(tx, door, k)
	if err != nil || !ok || !a.IsOpen() {
		return AlarmChange{}, false, err
	}
	a.State, a.Closed, a.Away = AlarmCleared, now, away
	if detail != "" {
		a.Detail = strings.TrimPrefix(a.Detail+"; "+detail, "; ")
	}
	return AlarmChange{What: AlarmClosed, Alarm: a}, true, putAlarm(tx, &a)
}

// siteActor is who the change log names for what the site does on its
// own.
const siteActor = "latch serve"

// logAlarmChange appends the change-log entry of an alarm change the
// site made, in its transaction.
func logAlarmChange(tx *bolt.Tx, c AlarmChange, now time.Time) error {
	after, err := json.Marshal(c.Alarm)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%s at door %s", c.Alarm.Kind, c.Alarm.Door)
	if c.What == AlarmSnoozeEnded {
		detail += fmt.Sprintf(", %d repeats while snoozed", c.Repeats)
	}
	e := ChangeEntry{Time: now, Who: siteActor, From: "site", Op: "alarm " + c.What,
		Target: fmt.Sprintf("alarm %d", c.Alarm.ID), Detail: detail,
		Before: json.RawMessage("null"), After: after, Result: "ok"}
	return appendChange(tx, &e)
}

// PriorityOf gives an alarm's priority at a door.
type PriorityOf func(door string, k AlarmKind) Priority

// AlarmsFromEvents reads the events stored after the alarm cursor (at
// most n), raises and clears alarms by them (AlarmOf), and moves the
// cursor past them, in one transaction. A raise and a clear are each a
// change-log entry; a repeat is counted on its alarm. It returns what
// changed, in event order, the events read, and whether events may be
// left past them (call again).
func (d *DB) AlarmsFromEvents(n int, prio PriorityOf, now time.Time) ([]AlarmChange, []Arrival, bool, error) {
	cursor, err := d.AlarmCursor()
	if err != nil {
		return nil, nil, false, err
	}
	arr, next, err := d.EventsSince(cursor, n, "")
	if err != nil {
		return nil, nil, false, fmt.Errorf("site: alarms: %w", err)
	}
	if next == cursor {
		return nil, nil, false, nil
	}
	var out []AlarmChange
	err = d.update(func(tx *bolt.Tx) error {
		out = out[:0]
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyAlarmCursor); v != nil {
			if c, err := decodeU64(v); err != nil || c != cursor {
				return fmt.Errorf("alarm cursor moved from %d meanwhile: %w", cursor, ErrConflict)
			}
		}
		for i := range arr {
			e := &arr[i].Event
			raises, closes := AlarmOf(e)
			var c AlarmChange
			switch {
			case raises != "":
				if c, err = raise(tx, Alarm{Kind: raises, Door: arr[i].Door, Priority: prio(arr[i].Door, raises), Opened: now,
					Seq: e.Seq, At: e.Time, Detail: e.Detail}); err != nil {
					return err
				}
			case closes != "":
				var ok bool
				if c, ok, err = clearAlarm(tx, arr[i].Door, closes, now, fmt.Sprintf("%s at seq %d", e.Reason, e.Seq), 0); err != nil || !ok {
					if err != nil {
						return err
					}
					continue
				}
			default:
				continue
			}
			if c.What != AlarmRepeated {
				if err := logAlarmChange(tx, c, now); err != nil {
					return err
				}
			}
			out = append(out, c)
		}
		return meta.Put(keyAlarmCursor, encodeU64(next))
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("site: alarms: %w", err)
	}
	return out, arr, true, nil
}

// AlarmCursor returns the arrival cursor of the last event the alarms
// were raised from. A database without one starts at the end of the
// events stored, so that a site upgraded with years of events does not
// raise them all.
func (d *DB) AlarmCursor() (uint64, error) {
	var c uint64
	var set bool
	err := d.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyAlarmCursor)
		if v == nil {
			return nil
		}
		set = true
		var err error
		c, err = decodeU64(v)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("site: alarm cursor: %w", err)
	}
	if set {
		return c, nil
	}
	end, err := d.ArrivalEnd()
	if err != nil {
		return 0, err
	}
	err = d.update(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyAlarmCursor); v != nil {
			var err error
			end, err = decodeU64(v)
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyAlarmCursor, encodeU64(end))
	})
	if err != nil {
		return 0, fmt.Errorf("site: alarm cursor: %w", err)
	}
	return end, nil
}

// OfflineRule is when the site counts a door offline: OfflineAfter after
// its offline status (its last will or its clean stop), or SilentAfter
// after its last status when that said it was online (a door republishes
// its status every few minutes, so a door heard from less often than
// that is gone without its will).
type OfflineRule struct {
	OfflineAfter, SilentAfter time.Duration
}

// CheckOffline raises an offline alarm for each approved door that the
// rule counts offline at now, and clears the open offline alarm of each
// door heard from again (online) since it went away, with the time it
// was away; in one transaction, each raise and clear a change-log entry.
// An offline alarm resolved while the door is still away is not raised
// again until the door has been back.
func (d *DB) CheckOffline(rule OfflineRule, prio PriorityOf, now time.Time) ([]AlarmChange, error) {
	// A read first: most checks change nothing and cost no write.
	due := false
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		due, err = offline(tx, rule, prio, now, nil)
		return err
	})
	if err != nil || !due {
		return nil, wrapped("offline doors", err)
	}
	var out []AlarmChange
	err = d.update(func(tx *bolt.Tx) error {
		out = out[:0]
		_, err := offline(tx, rule, prio, now, func(c AlarmChange) error {
			out = append(out, c)
			return logAlarmChange(tx, c, now)
		})
		return err
	})
	return out, wrapped("offline doors", err)
}

// wrapped is err, if any, saying what failed.
func wrapped(what string, err error) error {
	if err != nil {
		return fmt.Errorf("site: %s: %w", what, err)
	}
	return nil
}

// offline finds the offline alarms to raise and clear in tx and reports
// whether there are any; with done, it raises and clears them and hands
// each change to done.
func offline(tx *bolt.Tx, rule OfflineRule, prio PriorityOf, now time.Time, done func(AlarmChange) error) (bool, error) {
	due := false
	err := tx.Bucket(bucketDoors).ForEach(func(k, v []byte) error {
		var door Door
		if err := decodeJSON(v, &door); err != nil {
			return fmt.Errorf("door %q: %w", k, err)
		}
		if door.Approved == nil || door.LastSeen.IsZero() {
			return nil
		}
		var st struct {
			Online bool `json:"online"`
		}
		_ = json.Unmarshal(door.Status, &st)
		last, ok, err := latestAlarm(tx, door.ID, AlarmOffline)
		if err != nil {
			return err
		}
		var c AlarmChange
		switch {
		case ok && last.IsOpen():
			if !st.Online || !door.LastSeen.After(last.Since) {
				return nil
			}
			if due = true; done == nil {
				return nil
			}
			away := door.LastSeen.Sub(last.Since).Round(time.Millisecond)
			if c, _, err = clearAlarm(tx, door.ID, AlarmOffline, now, "back after "+away.String(), away); err != nil {
				return err
			}
		case ok && !door.LastSeen.After(last.Since):
			return nil // resolved while the door is still away
		default:
			silent := now.Sub(door.LastSeen)
			if (st.Online && silent < rule.SilentAfter) || (!st.Online && silent < rule.OfflineAfter) {
				return nil
			}
			if due = true; done == nil {
				return nil
			}
			why := "offline status"
			if st.Online {
				why = "no status"
			}
			if c, err = raise(tx, Alarm{Kind: AlarmOffline, Door: door.ID, Priority: prio(door.ID, AlarmOffline), Opened: now,
				Since: door.LastSeen, Detail: fmt.Sprintf("%s since %s", why, door.LastSeen.UTC().Format(time.RFC3339))}); err != nil {
				return err
			}
		}
		return done(c)
	})
	return due, err
}

// EndSnoozes ends the snooze of each open alarm whose SnoozedUntil is
// not after now, in one transaction, each a change-log entry; the
// changes carry the repeats counted during the snooze. An alarm resolved
// or acknowledged meanwhile has no snooze left to end.
func (d *DB) EndSnoozes(now time.Time) ([]AlarmChange, error) {
	due := func(a *Alarm) bool { return a.IsOpen() && !a.SnoozedUntil.IsZero() && !now.Before(a.SnoozedUntil) }
	// A read first: most checks find nothing to end and cost no write.
	open, err := openAlarms(d, 0)
	if err != nil || !slices.ContainsFunc(open, func(a Alarm) bool { return due(&a) }) {
		return nil, wrapped("end alarm snoozes", err)
	}
	var out []AlarmChange
	err = d.update(func(tx *bolt.Tx) error {
		out = out[:0]
		for _, o := range open {
			a, err := getAlarm(tx, o.ID)
			if err != nil {
				return err
			}
			if !due(&a) {
				continue
			}
			c := AlarmChange{What: AlarmSnoozeEnded, Repeats: a.SnoozeRepeats}
			a.Unsnooze()
			c.Alarm = a
			if err := putAlarm(tx, &a); err != nil {
				return err
			}
			if err := logAlarmChange(tx, c, now); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, wrapped("end alarm snoozes", err)
}

// Alarm returns alarm id, or ErrNotFound.
func (d *DB) Alarm(id uint64) (Alarm, error) {
	var a Alarm
	err := d.view(func(tx *bolt.Tx) error {
		var err error
		a, err = getAlarm(tx, id)
		return err
	})
	return a, err
}

// Alarm returns alarm id, or ErrNotFound.
func (r *Reader) Alarm(id uint64) (Alarm, error) { return getAlarm(r.tx, id) }

// Alarms returns the alarms, newest first: only the open ones with open,
// at most n (0: all). The open ones are read through alarm_index (an
// open alarm is its door's latest of its kind), so that counting them
// does not read every closed alarm.
func (d *DB) Alarms(open bool, n int) ([]Alarm, error) {
	var out []Alarm
	var err error
	if open {
		out, err = openAlarms(d, n)
	} else {
		out, err = idNewestFirst(d, bucketAlarms, n, func(*Alarm) bool { return true })
	}
	if err != nil {
		return nil, fmt.Errorf("site: alarms: %w", err)
	}
	return out, nil
}

// openAlarms returns the open alarms, newest first, at most n (0: all).
func openAlarms(d *DB, n int) ([]Alarm, error) {
	var out []Alarm
	err := d.view(func(tx *bolt.Tx) error {
		ix := tx.Bucket(bucketAlarmIndex)
		if ix == nil {
			return nil
		}
		return ix.ForEach(func(_, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			a, err := getAlarm(tx, bytesU64(v))
			if err != nil {
				return err
			}
			if a.IsOpen() {
				out = append(out, a)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Alarm) int { return cmp.Compare(b.ID, a.ID) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, err
}

// ErrAlarmClosed is a step an alarm that is closed does not take.
var ErrAlarmClosed = fmt.Errorf("the alarm is closed: %w", ErrConflict)

// UpdateAlarm changes alarm id in one transaction: fn gets the alarm and
// changes it (its id, kind and door stay); an error from fn changes
// nothing. Through a Recording handle, the change and its change-log
// entry are one transaction.
func (d *DB) UpdateAlarm(id uint64, fn func(*Alarm) error) (Alarm, error) {
	var a Alarm
	err := d.update(func(tx *bolt.Tx) error {
		var err error
		if a, err = getAlarm(tx, id); err != nil {
			return err
		}
		kind, door := a.Kind, a.Door
		if err := fn(&a); err != nil {
			return err
		}
		a.ID, a.Kind, a.Door = id, kind, door
		b := tx.Bucket(bucketAlarms)
		v, err := encodeJSON(&a)
		if err != nil {
			return err
		}
		return b.Put(be64(id), v)
	})
	if err != nil {
		return a, fmt.Errorf("site: alarm %d: %w", id, err)
	}
	return a, nil
}
