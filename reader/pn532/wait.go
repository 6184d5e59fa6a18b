package pn532

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// ErrNoIRQ is returned by WaitCard on a Dev without a working IRQ line:
// Opts.IRQ is nil, or the driver found its wire broken and went back to
// reading the status byte. Poll works without it.
var ErrNoIRQ = errors.New("no IRQ line to wait on")

// ErrHalted is returned by a WaitCard that Halt ended.
var ErrHalted = errors.New("the reader was halted")

// WaitCard hands the wait for a card to the chip and sleeps until one
// answers, at most max: it sends InListPassiveTarget with the chip set to
// retry activation forever (MxRtyPassiveActivation 0xFF), and the PN532
// holds it until a card answers, then pulls IRQ low. Meanwhile the host
// sleeps on the IRQ edge and nothing crosses the SPI bus, so a card is
// seen as soon as the RF has activated it.
//
// After max without a card it returns ErrNoTarget and the command stays
// pending in the chip: the next WaitCard resumes it without a word on the
// bus. Any other call (Poll, Release, DataExchange, Ping, Halt), from any
// goroutine, ends the wait first with an ACK frame, which aborts the
// command; a WaitCard sleeping meanwhile sends it again once the bus is
// free, after switching the field off in case the chip selected a card
// before the abort. A card it returns is selected, as from Poll. It needs
// the IRQ line (ErrNoIRQ).
func (d *Dev) WaitCard(ctx context.Context, max time.Duration) (Target, error) {
	deadline := time.Now().Add(max)
	d.mu.Lock()
	halts := d.halts
	d.mu.Unlock()
	for {
		d.mu.Lock()
		if d.halts != halts {
			d.mu.Unlock()
			return Target{}, fmt.Errorf("pn532: InListPassiveTarget: %w", ErrHalted)
		}
		tg, done, err := d.waitStep(ctx)
		if done {
			d.mu.Unlock()
			return tg, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			d.mu.Unlock()
			return Target{}, ErrNoTarget
		}
		// Sleep without the lock, so that another call can take the bus.
		edge := d.edgeWatch(min(left, irqSlice))
		d.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-edge:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Target{}, ctx.Err()
		}
		t.Stop()
	}
}

// waitStep is one look of WaitCard, under d.mu: it starts the wait when
// the chip does not run it, and reads the card once the IRQ line says
// its answer is ready. done is false while the chip still waits.
func (d *Dev) waitStep(ctx context.Context) (tg Target, done bool, err error) {
	if err := d.prepare(ctx); err != nil {
		return Target{}, true, fmt.Errorf("pn532: InListPassiveTarget: %w", err)
	}
	if !d.useIRQ {
		return Target{}, true, fmt.Errorf("pn532: InListPassiveTarget: %w", ErrNoIRQ)
	}
	if !d.pending {
		if d.active {
			if err := d.fieldOff(ctx); err != nil {
				return Target{}, true, err
			}
		}
		if err := d.setRetries(ctx, 0xFF); err != nil {
			return Target{}, true, err
		}
		if err := d.send(ctx, []byte{cmdInListPassiveTarget, 0x01, 0x00}, sendAttempts); err != nil {
			d.failed(err)
			return Target{}, true, fmt.Errorf("pn532: InListPassiveTarget: %w", err)
		}
		d.pending = true
	}
	if d.o.IRQ.Read() != gpio.Low {
		return Target{}, false, nil
	}
	d.pending = false
	// The chip selected the card, whatever comes of the read.
	d.active = true
	p, err := d.readResponse(ctx, cmdInListPassiveTarget)
	if err != nil {
		d.failed(err)
		return Target{}, true, fmt.Errorf("pn532: InListPassiveTarget: %w", err)
	}
	tg, err = d.target(p)
	return tg, true, err
}

// settle ends a wait for a card that the chip runs, so that the caller
// can use the bus: an ACK frame aborts it. The chip may have selected a
// card just before, so the field counts as holding one.
func (d *Dev) settle() error {
	if !d.pending {
		return nil
	}
	d.pending = false
	d.active = true
	if err := d.abort(); err != nil {
		d.failed(err)
		return fmt.Errorf("pn532: abort the wait for a card: %w", err)
	}
	return nil
}
