package keypad_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// wiegandRig is an emulated Wiegand reader with a keypad.Wiegand running
// on it. Every delivered key and card is recorded as text, in order.
type wiegandRig struct {
	t    *testing.T
	em   *keypadtest.Wiegand
	w    *keypad.Wiegand
	got  chan string
	done chan error
}

func startWiegand(t *testing.T, opts *keypad.WiegandOpts) *wiegandRig {
	t.Helper()
	em := keypadtest.NewWiegand()
	w, err := keypad.NewWiegand(em.D0(), em.D1(), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &wiegandRig{t: t, em: em, w: w, got: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		r.done <- w.Run(context.Background(),
			func(k keypad.Key) { r.got <- "key " + k.String() },
			func(c keypad.Card) { r.got <- c.String() })
	}()
	synctest.Wait()
	return r
}

// send transmits frames with the typical timing, each followed by a
// silence longer than the gap.
func (r *wiegandRig) send(frames ...string) {
	r.t.Helper()
	for _, f := range frames {
		if err := r.em.Send(context.Background(), f); err != nil {
			r.t.Fatal(err)
		}
		advance(30 * time.Millisecond)
	}
}

// received returns what was delivered since the last call.
func (r *wiegandRig) received() []string {
	synctest.Wait()
	var out []string
	for {
		select {
		case s := <-r.got:
			out = append(out, s)
		default:
			return out
		}
	}
}

func (r *wiegandRig) close() {
	r.t.Helper()
	if err := r.w.Halt(); err != nil {
		r.t.Error(err)
	}
	if err := <-r.done; err != nil {
		r.t.Errorf("Run after Halt = %v", err)
	}
}

func keyBits(t *testing.T, k keypad.Key, n int) string {
	t.Helper()
	s, err := keypadtest.KeyBits(k, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cardBits(t *testing.T, facility, number uint32, n int) string {
	t.Helper()
	s, err := keypadtest.CardBits(facility, number, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWiegandKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startWiegand(t, nil)
		defer r.close()
		var want []string
		for _, n := range []int{4, 8} {
			for _, k := range "0123456789*#" {
				r.send(keyBits(t, keypad.Key(k), n))
				want = append(want, "key "+string(k))
			}
		}
		if got := r.received(); !slices.Equal(got, want) {
			t.Errorf("received %q, want %q", got, want)
		}
		if s := r.w.Stats(); s != (keypad.WiegandStats{Keys: 24}) {
			t.Errorf("Stats() = %+v", s)
		}
	})
}

func TestWiegandCards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em := keypadtest.NewWiegand()
		w, err := keypad.NewWiegand(em.D0(), em.D1(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var cards []keypad.Card
		r := &wiegandRig{t: t, em: em, w: w, done: make(chan error, 1)}
		go func() {
			r.done <- w.Run(context.Background(), nil, func(c keypad.Card) { cards = append(cards, c) })
		}()
		synctest.Wait()
		defer r.close()
		r.send(
			cardBits(t, 18, 12345, 26),
			cardBits(t, 0xbeef, 0x1234, 34),
			keyBits(t, '7', 4), // no onKey: counted, dropped
		)
		synctest.Wait()
		want := []keypad.Card{
			{UID: []byte{0x12, 0x30, 0x39}, Facility: 18, Number: 12345, Bits: 26},
			{UID: []byte{0xbe, 0xef, 0x12, 0x34}, Facility: 0xbeef, Number: 0x1234, Bits: 34},
		}
		if len(cards) != len(want) {
			t.Fatalf("cards %v, want %v", cards, want)
		}
		for i := range want {
			if cards[i].String() != want[i].String() || !bytes.Equal(cards[i].UID, want[i].UID) {
				t.Errorf("card %d = %v, want %v", i, cards[i], want[i])
			}
		}
		if s := r.w.Stats(); s != (keypad.WiegandStats{Keys: 1, Cards: 2}) {
			t.Errorf("Stats() = %+v", s)
		}
	})
}

// Malformed frames are dropped and counted; none becomes a key or card.
func TestWiegandDropsBadFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startWiegand(t, nil)
		defer r.close()
		card := cardBits(t, 18, 12345, 26)
		flip := func(s string, i int) string {
			b := []byte(s)
			b[i] ^= 1
			return string(b)
		}
		r.send(
			"10101",                         // 5 bits
			card[:25],                       // a bit lost
			card+"1",                        // a bit too many
			strings.Repeat("1", 80),         // noise
			flip(card, 0),                   // leading parity
			flip(card, 25),                  // trailing parity
			flip(card, 7),                   // facility bit
			flip(cardBits(t, 1, 2, 34), 20), // card number bit
			"10100100",                      // 8-bit: complement of 5, code 4
			"11111111",                      // 8-bit: complement of 0, code 15
			"1100",                          // 4-bit code 12
			"00101101",                      // 8-bit code 13 with its complement
		)
		if got := r.received(); len(got) != 0 {
			t.Errorf("malformed frames delivered %q", got)
		}
		want := keypad.WiegandStats{BadLength: 4, BadParity: 6, BadCode: 2}
		if s := r.w.Stats(); s != want {
			t.Errorf("Stats() = %+v, want %+v", s, want)
		}
		// A good frame after all that still comes through.
		r.send(keyBits(t, '#', 8))
		if got := r.received(); !slices.Equal(got, []string{"key #"}) {
			t.Errorf("received %q", got)
		}
	})
}

func TestWiegandGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startWiegand(t, nil)
		defer func() { r.close() }() // r is replaced below
		ctx := context.Background()
		key := keyBits(t, '4', 8)
		// Bits 24 ms apart are still one frame with the 25 ms gap.
		if err := r.em.SendTimed(ctx, key, keypadtest.PulseWidth, 24*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		advance(24 * time.Millisecond)
		if got := r.received(); len(got) != 0 {
			t.Fatalf("frame ended before the gap: %q", got)
		}
		advance(2 * time.Millisecond)
		if got := r.received(); !slices.Equal(got, []string{"key 4"}) {
			t.Fatalf("slow frame: received %q", got)
		}
		// Bits 30 ms apart are eight 1-bit frames.
		if err := r.em.SendTimed(ctx, key, keypadtest.PulseWidth, 30*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		if got := r.received(); len(got) != 0 {
			t.Fatalf("split frame delivered %q", got)
		}
		if s := r.w.Stats(); s.BadLength != 8 {
			t.Errorf("split frame: %+v, want 8 bad lengths", s)
		}
		// Two frames a little more than the gap apart are two frames.
		for _, k := range "12" {
			if err := r.em.Send(ctx, keyBits(t, keypad.Key(k), 4)); err != nil {
				t.Fatal(err)
			}
			advance(26 * time.Millisecond)
		}
		if got := r.received(); !slices.Equal(got, []string{"key 1", "key 2"}) {
			t.Fatalf("back to back: received %q", got)
		}
		// A custom gap.
		r.close()
		r = startWiegand(t, &keypad.WiegandOpts{Gap: 60 * time.Millisecond})
		if err := r.em.SendTimed(ctx, key, keypadtest.PulseWidth, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		advance(100 * time.Millisecond)
		if got := r.received(); !slices.Equal(got, []string{"key 4"}) {
			t.Fatalf("60 ms gap: received %q", got)
		}
	})
}

// A frame cut off by Halt is dropped: not delivered, not counted.
func TestWiegandHaltMidFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startWiegand(t, nil)
		sent := make(chan error)
		go func() { sent <- r.em.Send(context.Background(), cardBits(t, 1, 2, 26)) }()
		advance(10 * time.Millisecond)
		r.close()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		if got := r.received(); len(got) != 0 {
			t.Errorf("halted reader delivered %q", got)
		}
		if s := r.w.Stats(); s != (keypad.WiegandStats{}) {
			t.Errorf("Stats() = %+v", s)
		}
		// Run ends with its context too.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.w.Run(ctx, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want deadline exceeded", err)
		}
	})
}

// lowLine is a line held low: the reader unpowered behind a divider.
type lowLine struct{ *keypadtest.Pin }

func (lowLine) Read() gpio.Level { return gpio.Low }

func TestNewWiegand(t *testing.T) {
	em := keypadtest.NewWiegand()
	d0, d1 := em.D0(), em.D1()
	for _, tc := range []struct {
		name   string
		d0, d1 gpio.PinIn
		opts   *keypad.WiegandOpts
		err    string
	}{
		{"nil D0", nil, d1, nil, "pin 0 is nil"},
		{"nil D1", d0, nil, nil, "pin 1 is nil"},
		{"one pin twice", d0, d0, nil, "D0 is given twice"},
		{"negative gap", d0, d1, &keypad.WiegandOpts{Gap: -time.Millisecond}, "out of range"},
		{"huge gap", d0, d1, &keypad.WiegandOpts{Gap: time.Minute}, "out of range"},
		{"In fails", d0, failIn{d1.(*keypadtest.Pin)}, nil, "line busy"},
	} {
		w, err := keypad.NewWiegand(tc.d0, tc.d1, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "keypad: wiegand: ") {
			t.Errorf("%s: NewWiegand = %v, %v; want error containing %q", tc.name, w, err, tc.err)
		}
	}
	var logs bytes.Buffer
	w, err := keypad.NewWiegand(d0, lowLine{d1.(*keypadtest.Pin)}, &keypad.WiegandOpts{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "reads low while idle") || !strings.Contains(logs.String(), "pin=D1") {
		t.Errorf("no warning for a low line: %q", logs.String())
	}
	if s := w.String(); s != "keypad.Wiegand(D0 D0, D1 D1)" {
		t.Errorf("String() = %q", s)
	}
	if err := w.Halt(); err != nil {
		t.Errorf("Halt without Run: %v", err)
	}
}
