package main

import (
	"context"
	"fmt"

	"github.com/latchdoor/latch/store"
)

// JournalConfig is the [journal] table: what the door does when it cannot
// write its audit log.
type JournalConfig struct {
	// ReserveMiB is the space, in MiB, kept free for the journal on the
	// data directory's disk by a preallocated file that is released when
	// the disk fills (0-1024, default 4; 0 keeps no reserve).
	ReserveMiB *int `toml:"reserve_mib"`
	// Unrecorded is what the door does with a grant whose record cannot be
	// made durable (disk full, I/O error, read-only): "refuse" (default:
	// the door stays locked, reason journal_fault) or "open" (availability:
	// the door opens and the grant is recorded late or counted as lost).
	Unrecorded string `toml:"unrecorded_grant"`
	// MaxPending bounds the events held in memory while the journal cannot
	// write (100-1000000, default 10000); beyond it the oldest events that
	// are not alarms are dropped and counted in an events_lost event.
	MaxPending int `toml:"max_pending"`
}

// Journal settings.
const (
	defaultReserveMiB = 4
	maxReserveMiB     = 1024
	unrecordedRefuse  = "refuse"
	unrecordedOpen    = "open"
)

// check validates the [journal] table; errors name the key. isSet tells a
// key the file sets to 0 from one it leaves out.
func (j JournalConfig) check(isSet func(key string) bool) error {
	if j.ReserveMiB != nil && (*j.ReserveMiB < 0 || *j.ReserveMiB > maxReserveMiB) {
		return fmt.Errorf("journal.reserve_mib %d: want 0 (no reserve) to %d", *j.ReserveMiB, maxReserveMiB)
	}
	switch j.Unrecorded {
	case "", unrecordedRefuse, unrecordedOpen:
	default:
		return fmt.Errorf("journal.unrecorded_grant %q: want %q or %q", j.Unrecorded, unrecordedRefuse, unrecordedOpen)
	}
	return checkRanges(isSet, []setting[int]{{"journal.max_pending", j.MaxPending, 100, 1_000_000}})
}

// reserve is the reserve in bytes.
func (j JournalConfig) reserve() int64 {
	if j.ReserveMiB == nil {
		return defaultReserveMiB << 20
	}
	return int64(*j.ReserveMiB) << 20
}

// openJournal starts the door's journal: every audit event of the
// controller and the MQTT client goes through it.
func (d *daemon) openJournal() error {
	c := d.cfg
	j, err := store.OpenJournal(d.st, &store.JournalOptions{
		Reserve:    c.Journal.reserve(),
		MaxPending: c.Journal.MaxPending,
		Door:       c.Door,
		BootID:     d.boot,
		Clock: func() store.TimeQuality {
			if d.trust.trusted() {
				return store.TimeSynced
			}
			return store.TimeUnsynced
		},
		OnStored: d.stored,
		Logger:   d.log,
	})
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", c.DataDir, err)
	}
	d.journal = j
	return nil
}

// stored is called by the journal with every batch it wrote: each event is
// printed and handed to the MQTT client for delivery. A panic here stops
// the daemon but never makes the journal write an event again.
func (d *daemon) stored(evs []store.Event) {
	for _, e := range evs {
		if d.onEvent != nil {
			d.safe.call("printer", func() { d.onEvent(e) })
		}
		if cl := d.notify.Load(); cl != nil {
			d.safe.call("mqtt notify", func() { cl.Notify(e) })
		}
	}
}

// watchJournal tells the controller whenever the journal's health changes,
// so that the door shows a fault and its status says why.
func (d *daemon) watchJournal(ctx context.Context) error {
	last := store.JournalHealth{OK: true}
	for {
		h := d.journal.Health()
		if h.OK != last.OK || h.Reserve != last.Reserve || (!h.OK && h.Err != last.Err) {
			if err := d.ctrl.JournalHealth(ctx, h.OK, oneLine(h.Detail(), maxDetail)); err != nil && ctx.Err() == nil {
				d.log.Warn("journal health not delivered", "err", err)
			}
			last = h
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.journal.HealthChanges():
		}
	}
}

// closeJournal writes what the journal still holds and stops it; what it
// cannot write is in its loss record for the next start. A failure is
// logged, and returned so that latchd exits non-zero.
func (d *daemon) closeJournal() error {
	if d.journal == nil {
		return nil
	}
	// Close is idempotent: a second call returns nil.
	if err := d.journal.Close(); err != nil {
		d.log.Error("journal: close", "err", err)
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}
