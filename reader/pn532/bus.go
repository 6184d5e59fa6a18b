package pn532

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// SPI operation bytes (UM0701-02 §6.2.5), sent first in every transaction.
const (
	opDataWrite  = 0x01
	opStatusRead = 0x02
	opDataRead   = 0x03

	// statusReady is the status byte of a chip with a frame to read. A
	// floating MISO reads 0xFF, which has the ready bit set too: only the
	// exact value counts.
	statusReady = 0x01
)

// errNotReady is a wait for the chip that ran out of time.
var errNotReady = errors.New("not ready in time")

// busHealth remembers the status bytes read during one command, to tell a
// dead bus from a silent chip.
type busHealth struct {
	reads, ones, zeros int
}

func (h *busHealth) see(st byte) {
	h.reads++
	switch st {
	case 0xFF:
		h.ones++
	case 0x00:
		h.zeros++
	}
}

// explain turns a failure to get an ACK into ErrNoDevice when the status
// byte never showed a chip.
func (h *busHealth) explain(err error) error {
	switch {
	case h.reads == 0:
		return err
	case h.ones == h.reads:
		return fmt.Errorf("%w: the status byte always read 0xFF: MISO is floating (check the wiring, the board's SPI mode switches and chip select)", ErrNoDevice)
	case h.zeros == h.reads:
		return fmt.Errorf("%w: the status byte always read 0x00: MISO is held low, or the chip has no power or is held in reset", ErrNoDevice)
	}
	return err
}

// tx runs one SPI transaction: the operation byte, then payload, padded
// with zeros to n bytes when n is larger. It returns the n bytes read after
// the operation byte (nil when n is 0); they are valid until the next tx.
func (d *Dev) tx(op byte, payload []byte, n int) ([]byte, error) {
	r, err := d.transfer(op, payload, n)
	if r == nil {
		return nil, err
	}
	return r[1 : 1+n], nil
}

// transfer is tx returning every byte read, the one clocked in under the
// operation byte first.
func (d *Dev) transfer(op byte, payload []byte, n int) ([]byte, error) {
	size := 1 + max(len(payload), n)
	w := d.w[:size]
	w[0] = op
	copy(w[1:], payload)
	clear(w[1+len(payload):])
	if !d.o.LSBFirst {
		reverseBits(w)
	}
	var r []byte
	if n > 0 {
		r = d.r[:size]
	}
	if err := d.c.Tx(w, r); err != nil {
		return nil, fmt.Errorf("spi: %w", err)
	}
	if r == nil {
		return nil, nil
	}
	if !d.o.LSBFirst {
		reverseBits(r)
	}
	return r, nil
}

// status reads the status byte.
func (d *Dev) status() (byte, error) {
	r, err := d.tx(opStatusRead, nil, 1)
	if err != nil {
		return 0, err
	}
	d.bus.see(r[0])
	return r[0], nil
}

// abort writes an ACK frame, which stops the command the chip is running
// and drops its answer.
func (d *Dev) abort() error {
	_, err := d.tx(opDataWrite, ackFrame, 0)
	return err
}

// drain aborts, then reads and drops whatever the chip still says is
// ready, a few times at most.
func (d *Dev) drain() error {
	if err := d.abort(); err != nil {
		return err
	}
	for range 4 {
		st, err := d.status()
		if err != nil || st != statusReady {
			return err
		}
		if _, err := d.tx(opDataRead, nil, 64); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits for dur or until ctx is done.
func (d *Dev) sleep(ctx context.Context, dur time.Duration) error {
	if d.timer == nil {
		d.timer = time.NewTimer(dur)
	} else {
		d.timer.Reset(dur)
	}
	select {
	case <-ctx.Done():
		d.timer.Stop()
		return ctx.Err()
	case <-d.timer.C:
		return nil
	}
}

// wait waits until the chip has a frame to read: errNotReady after
// timeout, ctx.Err() when ctx is done first.
func (d *Dev) wait(ctx context.Context, timeout time.Duration) error {
	if d.useIRQ {
		return d.waitIRQ(ctx, timeout)
	}
	deadline := time.Now().Add(timeout)
	pause := max(d.o.StatusInterval/16, time.Microsecond)
	for {
		st, err := d.status()
		if err != nil {
			return err
		}
		if st == statusReady {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return errNotReady
		}
		if err := d.sleep(ctx, min(pause, left)); err != nil {
			return err
		}
		pause = min(2*pause, d.o.StatusInterval)
	}
}

// waitIRQ waits for the IRQ line to go low. When it does not by the
// deadline, one status read tells a silent chip from a broken IRQ wire;
// with a broken wire the driver goes back to reading the status byte.
func (d *Dev) waitIRQ(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.o.IRQ.Read() == gpio.Low {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			st, err := d.status()
			if err != nil {
				return err
			}
			if st != statusReady {
				return errNotReady
			}
			d.log.Warn("pn532: the chip was ready but the IRQ line stayed high: check its wire; reading the status byte from now on", "port", d.name, "irq", d.o.IRQ.String())
			d.useIRQ = false
			return nil
		}
		if err := d.irqEdge(ctx, min(left, irqSlice)); err != nil {
			return err
		}
	}
}

// irqEdge waits up to wait for an edge on the IRQ line, or until ctx is
// done.
func (d *Dev) irqEdge(ctx context.Context, wait time.Duration) error {
	select {
	case <-d.edgeWatch(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// edgeWatch returns a channel closed at the next edge on the IRQ line or
// after wait. WaitForEdge cannot be interrupted and one pin takes one
// waiter, so it runs in a goroutine of its own, one at a time: a watch
// still running, left by a wait that ended first or shared with WaitCard
// sleeping without the lock, is returned again. Callers hold d.mu.
func (d *Dev) edgeWatch(wait time.Duration) <-chan struct{} {
	if d.irqDone != nil {
		select {
		case <-d.irqDone: // over: its edge, if any, shows in the level
		default:
			return d.irqDone
		}
	}
	done := make(chan struct{})
	pin := d.o.IRQ
	go func() {
		pin.WaitForEdge(wait)
		close(done)
	}()
	d.irqDone = done
	return done
}

// exchange is the one way commands reach the chip: it frames cmd (command
// code and parameters), writes it, waits for the ACK (sending the frame
// again, up to attempts times, when none comes or something else comes
// instead), waits for the response, reads it (asking again with NACK when
// it is damaged), checks it and returns its parameters. A command that
// does not finish in time or whose ctx ends is aborted.
func (d *Dev) exchange(ctx context.Context, cmd []byte, attempts int) ([]byte, error) {
	if err := d.send(ctx, cmd, attempts); err != nil {
		return nil, err
	}
	if err := d.wait(ctx, d.o.ResponseTimeout); err != nil {
		if errors.Is(err, errNotReady) {
			if err := d.abort(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w (%s)", ErrNoResponse, d.o.ResponseTimeout)
		}
		d.abortAfter(err)
		return nil, err
	}
	return d.readResponse(ctx, cmd[0])
}

// send is the first half of exchange: the command frame, sent until the
// chip acknowledges it, up to attempts times.
func (d *Dev) send(ctx context.Context, cmd []byte, attempts int) error {
	code := cmd[0]
	req, err := appendFrame(d.req[:0], tfiHost, cmd)
	if err != nil {
		return err
	}
	d.req = req
	d.bus = busHealth{}
	lastErr := ErrNoACK
	acked := false
	for a := 0; a < attempts && !acked; a++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if a > 0 {
			d.log.Debug("pn532: sending the command again", "port", d.name, "cmd", fmt.Sprintf("0x%02X", code), "attempt", a+1, "after", lastErr)
		}
		if _, err := d.tx(opDataWrite, req, 0); err != nil {
			return err
		}
		switch err := d.wait(ctx, d.o.ACKTimeout); {
		case errors.Is(err, errNotReady):
			lastErr = ErrNoACK
			if err := d.abort(); err != nil {
				return err
			}
			continue
		case err != nil:
			d.abortAfter(err)
			return err
		}
		b, err := d.tx(opDataRead, nil, len(ackFrame))
		if err != nil {
			return err
		}
		f, ferr := decodeFrame(b)
		switch {
		case ferr == nil && f.kind == kindACK:
			acked = true
		case ferr == nil && f.kind == kindError:
			return ErrSyntax
		default:
			// Most likely the answer to a command sent before the host
			// restarted, which the chip delivers before anything else.
			lastErr = fmt.Errorf("%w: got % X where the ACK was due", ErrNoACK, b)
			d.log.Warn("pn532: expected an ACK, got something else: dropping it", "port", d.name, "bytes", fmt.Sprintf("% X", b))
			if err := d.drain(); err != nil {
				return err
			}
		}
	}
	if !acked {
		return d.bus.explain(lastErr)
	}
	return nil
}

// abortAfter aborts the running command after err, unless err came from
// the bus itself.
func (d *Dev) abortAfter(err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if aerr := d.abort(); aerr != nil {
			d.log.Debug("pn532: abort failed", "port", d.name, "err", aerr)
		}
	}
}

// defaultExpect is the response frame length to read for a command when
// no answer to it has been seen yet: the usual answer. A read too long
// costs bytes, a read too short a transaction; for InListPassiveTarget it
// is a card with a 7-byte UID, the answer that matters.
func defaultExpect(code byte) int {
	switch code {
	case cmdGetFirmwareVersion:
		return frameLen(6)
	case cmdInListPassiveTarget:
		// TFI, code, NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1.
		return frameLen(8 + 7)
	case cmdInDataExchange:
		return frameLen(3 + 2) // status and SW1 SW2
	}
	return frameLen(3)
}

// maxFrameReads bounds the transactions that read one frame: the first,
// one more when it ended inside an extended frame's header, and the rest.
const maxFrameReads = 3

// readFrame reads the frame the chip has ready: n bytes, then, while the
// frame says it is longer than what was read, exactly the rest in a
// continuation read. In SPI mode the PN532 lets a host read a frame in
// parts; in a continuation it shifts out the next byte of the frame while
// it receives the operation byte, so the parts cost no byte more than one
// read of the whole frame, only a transaction. The frame's data alias a
// buffer of d that the next read reuses.
func (d *Dev) readFrame(n int) (frame, error) {
	b, err := d.tx(opDataRead, nil, n)
	if err != nil {
		return frame{}, err
	}
	buf := append(d.frame[:0], b...)
	defer func() { d.frame = buf }()
	for reads := 1; ; reads++ {
		f, err := decodeFrame(buf)
		var te *truncatedError
		if !errors.As(err, &te) || reads == maxFrameReads || te.need > maxFrameLen {
			return f, err
		}
		r, err := d.transfer(opDataRead, nil, te.need-len(buf)-1)
		if err != nil {
			return frame{}, err
		}
		buf = append(buf, r...)
	}
}

// readResponse reads the response to command code, whole: as many bytes
// as the last answer to the same command had, so that the usual case is
// one transaction of exactly the frame, and the rest of a longer frame in
// a continuation read. InListPassiveTarget is read at least at the size of
// a card with a 7-byte UID: an empty field's shorter answer is read with
// 12 bytes of padding after it, so that a card that arrives after it is
// still read in one transaction (a transaction costs more than 12 bytes
// at the bus's clock). A damaged frame is asked for again with NACK.
func (d *Dev) readResponse(ctx context.Context, code byte) ([]byte, error) {
	n := d.expect[code]
	if n == 0 {
		n = defaultExpect(code)
	}
	for nacks := 0; ; nacks++ {
		f, err := d.readFrame(n)
		if err != nil && !errors.Is(err, ErrFrame) {
			return nil, err // the bus
		}
		if err == nil {
			switch f.kind {
			case kindInfo:
				d.expect[code] = f.end
				if code == cmdInListPassiveTarget {
					d.expect[code] = max(f.end, defaultExpect(code))
				}
				p, err := checkResponse(f, code)
				if err != nil {
					return nil, err
				}
				return append([]byte(nil), p...), nil
			case kindError:
				return nil, ErrSyntax
			default:
				return nil, &FrameError{Offset: -1, Reason: fmt.Sprintf("%s where a response was due", f.kind)}
			}
		}
		var te *truncatedError
		if errors.As(err, &te) {
			err = &FrameError{Offset: -1, Reason: err.Error()}
		}
		if nacks >= maxNACKs {
			return nil, err
		}
		n = max(n, min(len(d.frame), maxFrameLen))
		d.log.Debug("pn532: asking for the response again (NACK)", "port", d.name, "cmd", fmt.Sprintf("0x%02X", code), "why", err)
		if _, err := d.tx(opDataWrite, nackFrame, 0); err != nil {
			return nil, err
		}
		if err := d.wait(ctx, d.o.ResponseTimeout); err != nil {
			if errors.Is(err, errNotReady) {
				return nil, fmt.Errorf("%w: after NACK", ErrNoResponse)
			}
			d.abortAfter(err)
			return nil, err
		}
	}
}
