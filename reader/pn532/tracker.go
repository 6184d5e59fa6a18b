package pn532

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// TrackEvent is one of Presented, Removed, Fault and Recovered.
type TrackEvent interface {
	trackEvent()
}

// Presented reports a card that came into the field. A card that stays is
// reported once.
type Presented struct {
	Target Target // the card as the reader saw it
}

// Removed reports that the card of the last Presented has left the field,
// or can no longer be seen because the reader failed.
type Removed struct {
	Target Target // the card that left
}

// Fault reports, once, that polls keep failing although the driver
// re-initialised the reader; Err is the last failure.
type Fault struct {
	Err error // the last failure
}

// Recovered reports, once, that the reader answers again after a Fault.
type Recovered struct{}

func (Presented) trackEvent() {}
func (Removed) trackEvent()   {}
func (Fault) trackEvent()     {}
func (Recovered) trackEvent() {}

// TrackerOpts configures a Tracker. Zero values mean the defaults.
type TrackerOpts struct {
	// RemoveAfter is how many empty polls in a row mean the card has left:
	// a card held at the edge of the field misses a poll now and then.
	// Default 3.
	RemoveAfter int
	// FaultAfter is how many failed polls in a row make a Fault. The driver
	// re-initialises the reader after two, so the default 3 reports a
	// fault only once a re-initialisation failed too.
	FaultAfter int
	// Wait waits d between two polls, or until ctx is done. Nil means
	// WaitTimer; tests put a function that returns at once.
	Wait func(ctx context.Context, d time.Duration) error
	// Logger receives poll failures. Nil discards them.
	Logger *slog.Logger
}

// presenceWindow is how long, in IRQ mode, a card that was in the field
// has to answer again before the look counts as an empty poll. The RF
// activates a card in 2.4 ms (4-byte UID) to 4.5 ms (7-byte UID); the
// rest is for a card at the edge of the field that needs a few attempts.
const presenceWindow = 20 * time.Millisecond

// Tracker turns polls of a Dev into presence and health events.
//
// Without an IRQ line it polls the reader every Opts.PollPeriod (timer
// mode), so a card waits up to a period to be seen. With one (IRQ mode)
// it hands the wait to the chip (Dev.WaitCard) and sleeps on the IRQ
// edge: a card is seen as soon as the RF has activated it, and while no
// card is there nothing crosses the SPI bus but the one pending command.
// While a card is present, both modes look for it every PollPeriod with
// the field switched off in between, so that a card left on the reader
// is reported once; in IRQ mode each look is the chip's wait for a card
// again, which, when the card is gone, simply goes on waiting for the
// next one. A card taken away is reported after RemoveAfter looks found
// nothing: within RemoveAfter poll periods (and, in IRQ mode, 20 ms more
// for the first look).
type Tracker struct {
	d      *Dev
	period time.Duration
	o      TrackerOpts
	log    *slog.Logger
	irq    bool
}

// NewTracker returns a tracker of d: in IRQ mode when d has an IRQ line
// (Opts.IRQ), in timer mode every d's Opts.PollPeriod otherwise. opts is
// copied; nil means the defaults.
func NewTracker(d *Dev, opts *TrackerOpts) *Tracker {
	var o TrackerOpts
	if opts != nil {
		o = *opts
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 3
	}
	if o.FaultAfter <= 0 {
		o.FaultAfter = 3
	}
	if o.Wait == nil {
		o.Wait = WaitTimer
	}
	l := o.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Tracker{d: d, period: d.o.PollPeriod, o: o, log: l, irq: d.o.IRQ != nil}
}

// WaitTimer waits d on a timer, or until ctx is done and returns ctx's
// error. It is the default TrackerOpts.Wait; a Wait that does more, such
// as counting polls, calls it to wait.
func WaitTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run polls until ctx is done and calls fn with each event, from Run's
// goroutine. While fn handles Presented the card is still selected, so fn
// may talk to it with DataExchange; once fn returns the tracker releases
// it (RF field off) until the next poll. Other goroutines may use d
// meanwhile: in IRQ mode their call ends the chip's wait, and the tracker
// starts it again after. Run returns ctx's error, or the error of Wait;
// in IRQ mode the chip may still wait for a card, which d's next call
// (Halt, typically) ends.
func (t *Tracker) Run(ctx context.Context, fn func(TrackEvent)) error {
	var (
		present  *Target
		empties  int
		failures int
		faulted  bool
		irq      = t.irq
	)
	for {
		var (
			tg     Target
			err    error
			waited bool // the look itself took its time: no pause after it
		)
		if irq {
			window := t.period
			if present != nil && empties == 0 {
				window = presenceWindow
			}
			tg, err = t.d.WaitCard(ctx, window)
			switch {
			case errors.Is(err, ErrNoIRQ):
				t.log.Warn("pn532: no IRQ line to wait on: polling every period", "reader", t.d.String())
				irq = false
				tg, err = t.d.Poll(ctx)
			case errors.Is(err, ErrNoTarget):
				waited = true
			}
		} else {
			tg, err = t.d.Poll(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil || errors.Is(err, ErrNoTarget):
			failures = 0
			if faulted {
				faulted = false
				t.log.Info("pn532: reader answers again", "reader", t.d.String())
				fn(Recovered{})
			}
			if err != nil {
				if present != nil {
					empties++
					if empties >= t.o.RemoveAfter {
						gone := *present
						present, empties = nil, 0
						fn(Removed{Target: gone})
					}
				}
				break
			}
			empties = 0
			switch {
			case present == nil:
				present = &tg
				fn(Presented{Target: tg})
			case !sameCard(*present, tg):
				gone := *present
				present = &tg
				fn(Removed{Target: gone})
				fn(Presented{Target: tg})
			}
			if err := t.d.Release(ctx); err != nil && ctx.Err() == nil {
				t.log.Debug("pn532: release failed", "reader", t.d.String(), "err", err)
			}
		default:
			failures++
			t.log.Debug("pn532: poll failed", "reader", t.d.String(), "failures", failures, "err", err)
			if failures >= t.o.FaultAfter && !faulted {
				faulted = true
				if present != nil {
					gone := *present
					present, empties = nil, 0
					fn(Removed{Target: gone})
				}
				t.log.Warn("pn532: reader fault", "reader", t.d.String(), "err", err)
				fn(Fault{Err: err})
			}
		}
		if waited {
			continue
		}
		if err := t.o.Wait(ctx, t.period); err != nil {
			return err
		}
	}
}
