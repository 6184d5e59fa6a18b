package keypadtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
)

// Typical Wiegand timing, used by Send.
const (
	PulseWidth  = 50 * time.Microsecond // each bit pulls its line low this long
	BitInterval = 2 * time.Millisecond  // from the start of one bit to the next
)

// Wiegand is an emulated Wiegand keypad or card reader: two input lines,
// D0 and D1, idle high, each bit a short low pulse on D0 for 0 or D1 for 1.
type Wiegand struct {
	mu   sync.Mutex // guards the pins and low
	d0   *Pin
	d1   *Pin
	low  [2]bool    // line pulled low
	send sync.Mutex // one frame on the wire at a time
}

// NewWiegand returns an idle emulated reader; its lines are named D0 and
// D1.
func NewWiegand() *Wiegand {
	w := &Wiegand{}
	w.d0 = newPin(&w.mu, w, roleLine, "D0", 0)
	w.d1 = newPin(&w.mu, w, roleLine, "D1", 1)
	return w
}

// D0 returns the line that pulses for each 0 bit. It is a *Pin.
func (w *Wiegand) D0() gpio.PinIn { return w.d0 }

// D1 returns the line that pulses for each 1 bit. It is a *Pin.
func (w *Wiegand) D1() gpio.PinIn { return w.d1 }

// Send transmits bits, a string of '0' and '1' sent first character first,
// with the typical PulseWidth and BitInterval. It returns after the last
// pulse; the frame ends for a receiver once its gap passes after that.
func (w *Wiegand) Send(ctx context.Context, bits string) error {
	return w.SendTimed(ctx, bits, PulseWidth, BitInterval)
}

// SendTimed is Send with the pulse width and the interval from one bit's
// start to the next given: an interval longer than a receiver's gap splits
// the bits into frames. If ctx ends, the frame is cut short, both lines are
// left high, and ctx's error is returned.
func (w *Wiegand) SendTimed(ctx context.Context, bits string, width, interval time.Duration) error {
	if strings.Trim(bits, "01") != "" {
		return fmt.Errorf("keypadtest: Wiegand bits %q: want only 0 and 1", bits)
	}
	if width <= 0 || interval < width {
		return fmt.Errorf("keypadtest: Wiegand pulse %v every %v: want 0 < width <= interval", width, interval)
	}
	w.send.Lock()
	defer w.send.Unlock()
	t := time.NewTimer(0)
	<-t.C
	defer t.Stop()
	pause := func(d time.Duration) error {
		if d <= 0 {
			return nil
		}
		t.Reset(d)
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := 0; i < len(bits); i++ {
		line := int(bits[i] - '0')
		w.line(line, true)
		err := pause(width)
		w.line(line, false)
		if err != nil {
			return err
		}
		if i < len(bits)-1 {
			if err := pause(interval - width); err != nil {
				return err
			}
		}
	}
	return nil
}

// line pulls line 0 (D0) or 1 (D1) low, or lets it go high.
func (w *Wiegand) line(i int, low bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.low[i] = low
	w.update()
}

// update sets the lines' levels. w.mu is held.
func (w *Wiegand) update() {
	for i, p := range []*Pin{w.d0, w.d1} {
		if w.low[i] {
			p.set(gpio.Low)
		} else {
			p.set(gpio.High)
		}
	}
}

func (w *Wiegand) observe(*Pin) {}

// KeyBits encodes key k as an n-bit Wiegand key frame for Send: n = 4 is
// the key's code ('0'–'9' are 0–9, '*' 10, '#' 11), n = 8 the code's
// complement nibble then the code.
func KeyBits(k keypad.Key, n int) (string, error) {
	var c uint64
	switch {
	case k >= '0' && k <= '9':
		c = uint64(k - '0')
	case k == '*':
		c = 10
	case k == '#':
		c = 11
	default:
		return "", fmt.Errorf("keypadtest: key %s has no Wiegand code", k)
	}
	switch n {
	case 4:
		return fmt.Sprintf("%04b", c), nil
	case 8:
		return fmt.Sprintf("%04b%04b", ^c&0xf, c), nil
	}
	return "", fmt.Errorf("keypadtest: %d-bit Wiegand key frame: want 4 or 8", n)
}

// CardBits encodes a card as an n-bit Wiegand frame for Send, with both
// parity bits: n = 26 (H10301) takes an 8-bit facility code, n = 34
// (H10306) a 16-bit one; both take a 16-bit card number.
func CardBits(facility, number uint32, n int) (string, error) {
	var fbits int
	switch n {
	case 26:
		fbits = 8
	case 34:
		fbits = 16
	default:
		return "", fmt.Errorf("keypadtest: %d-bit Wiegand card frame: want 26 or 34", n)
	}
	if facility >= 1<<fbits || number >= 1<<16 {
		return "", fmt.Errorf("keypadtest: facility %d or card %d too large for %d bits", facility, number, n)
	}
	data := fmt.Sprintf("%0*b%016b", fbits, facility, number)
	half := len(data) / 2
	even := strings.Count(data[:half], "1")%2 == 1 // makes the first half even
	odd := strings.Count(data[half:], "1")%2 == 0  // makes the second half odd
	return bit(even) + data + bit(odd), nil
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
