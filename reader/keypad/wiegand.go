package keypad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/pin"
)

// WiegandOpts configures a Wiegand. The zero value selects every default.
type WiegandOpts struct {
	// Gap is the silence on both lines that ends a frame. Default 25 ms.
	// It must be longer than the reader's time between bits (usually 1–2
	// ms) and shorter than the time between two frames (a key press, or a
	// second card); raise it only for a reader documented to pause longer
	// between bits.
	Gap time.Duration
	// Logger receives a debug line for each dropped frame, with its bit
	// count and the reason. Keys and card numbers are never logged. Nil
	// discards.
	Logger *slog.Logger
}

// WiegandStats counts the frames a Wiegand has received since it was made.
type WiegandStats struct {
	Keys  uint64 // well-formed key frames (4 and 8 bits)
	Cards uint64 // well-formed card frames (26 and 34 bits)
	// Frames dropped, by reason: a bit count of no supported format (noise
	// on a line, a lost bit), a wrong parity bit or 8-bit complement
	// nibble, and a 4- or 8-bit code that is no key (12–15).
	BadLength, BadParity, BadCode uint64
}

// Wiegand is a Wiegand keypad or card reader on two GPIO inputs, D0 and
// D1. Every falling edge on D0 is a 0 bit and on D1 a 1 bit; a frame ends
// when both lines stay quiet for the Gap.
//
// Frames of 4 or 8 bits are keys, of 26 or 34 bits cards; see the package
// documentation for the formats. Anything else, and any frame failing its
// parity or complement check, is dropped and counted in Stats, never turned
// into a key or a card.
type Wiegand struct {
	d0, d1 gpio.PinIn
	gap    time.Duration
	log    *slog.Logger
	run    runner

	keys, cards, badLength, badParity, badCode atomic.Uint64
}

var _ conn.Resource = (*Wiegand)(nil)

// NewWiegand returns a Wiegand on the D0 and D1 inputs, configured with
// pull-ups and falling-edge detection. A line that reads low is logged as a
// warning (an idle reader holds both high): the reader may still be
// powering up, or its level shifter may be unpowered.
//
// The pin driver must queue every edge, as the Linux GPIO character device
// (periph's gpioioctl) does: a driver that reports only "some edge
// happened" loses bits, and the frames they belong to are dropped.
func NewWiegand(d0, d1 gpio.PinIn, opts *WiegandOpts) (*Wiegand, error) {
	var o WiegandOpts
	if opts != nil {
		o = *opts
	}
	if err := checkPins([]pin.Pin{d0, d1}); err != nil {
		return nil, fmt.Errorf("keypad: wiegand: %w", err)
	}
	if o.Gap == 0 {
		o.Gap = 25 * time.Millisecond
	}
	if o.Gap < 0 || o.Gap > time.Second {
		return nil, fmt.Errorf("keypad: wiegand: Gap %v out of range (0, 1s]", o.Gap)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Wiegand{d0: d0, d1: d1, gap: o.Gap, log: o.Logger}
	for _, p := range []gpio.PinIn{d0, d1} {
		if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			return nil, fmt.Errorf("keypad: wiegand: %s: %w", p, err)
		}
	}
	for _, p := range []gpio.PinIn{d0, d1} {
		if p.Read() == gpio.Low {
			w.log.Warn("keypad: wiegand line reads low while idle: check the reader's power and the level shifter", "pin", p.Name())
		}
	}
	return w, nil
}

// String returns the reader's pins.
func (w *Wiegand) String() string {
	return fmt.Sprintf("keypad.Wiegand(D0 %s, D1 %s)", w.d0.Name(), w.d1.Name())
}

// Halt stops Run and waits for it to return. The lines are inputs, so
// there is nothing to drive to a safe state.
func (w *Wiegand) Halt() error {
	w.run.stop()
	return nil
}

// Stats returns the frame counters. It is safe to call at any time.
func (w *Wiegand) Stats() WiegandStats {
	return WiegandStats{
		Keys:      w.keys.Load(),
		Cards:     w.cards.Load(),
		BadLength: w.badLength.Load(),
		BadParity: w.badParity.Load(),
		BadCode:   w.badCode.Load(),
	}
}

// Run receives frames until ctx ends or Halt is called, calling onKey for
// each key and onCard for each card on the calling goroutine. Either may be
// nil: such frames are still decoded and counted, then dropped. Callbacks
// should return quickly; bits arriving meanwhile are queued, up to two
// frames' worth.
//
// Run returns nil after Halt, ctx.Err() when ctx ends. A frame still
// arriving then is dropped. Only one Run may be in progress at a time.
func (w *Wiegand) Run(ctx context.Context, onKey func(Key), onCard func(Card)) error {
	ctx, end, err := w.run.start(ctx)
	if err != nil {
		return fmt.Errorf("keypad: wiegand: %w", err)
	}
	defer end()
	// Arm the lines again: a previous Run halted them.
	lines := []gpio.PinIn{w.d0, w.d1}
	for _, p := range lines {
		if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			return fmt.Errorf("keypad: wiegand: %s: %w", p, err)
		}
	}
	// Each line has its own watcher, which stamps a bit the moment its
	// WaitForEdge returns; the burst puts bits back in time order.
	in := make(chan bitAt, 2*maxBurst)
	defer watchers(ctx, w.log, lines, func(ctx context.Context, i int) {
		select {
		case in <- bitAt{t: time.Now(), one: i == 1}:
		case <-ctx.Done():
		}
	})()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	b := burst{gap: w.gap}
	for {
		var tick <-chan time.Time
		if at, ok := b.due(); ok {
			timer.Reset(time.Until(at))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return result(ctx)
		case x := <-in:
			if v, n, ok := b.add(x.one, x.t); ok {
				w.deliver(v, n, onKey, onCard)
			}
		case <-tick:
			if v, n, ok := b.end(time.Now()); ok {
				w.deliver(v, n, onKey, onCard)
			}
		}
	}
}

// deliver decodes one burst, counts it, and hands on what it holds.
func (w *Wiegand) deliver(v uint64, n int, onKey func(Key), onCard func(Card)) {
	f, err := decodeWiegand(v, n)
	switch {
	case errors.Is(err, errBitCount):
		w.badLength.Add(1)
	case errors.Is(err, errParity):
		w.badParity.Add(1)
	case errors.Is(err, errKeyCode):
		w.badCode.Add(1)
	case err != nil:
		// decodeWiegand wraps one of the above; count anything else as a
		// bad length rather than lose it.
		w.badLength.Add(1)
	case f.isCard:
		w.cards.Add(1)
		if onCard != nil {
			onCard(f.card)
		}
		return
	default:
		w.keys.Add(1)
		if onKey != nil {
			onKey(f.key)
		}
		return
	}
	w.log.Debug("keypad: wiegand frame dropped", "bits", n, "err", err)
}
