package keypadtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
)

func newMatrix(t *testing.T, layout string) *Matrix {
	t.Helper()
	m, err := NewMatrix(layout)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Cols() {
		if err := c.In(gpio.PullUp, gpio.BothEdges); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// drive sets the rows: 'L' driven low, 'H' driven high, '-' released.
func drive(t *testing.T, m *Matrix, rows string) {
	t.Helper()
	for i, p := range m.Rows() {
		var err error
		switch rows[i] {
		case 'L':
			err = p.Out(gpio.Low)
		case 'H':
			err = p.Out(gpio.High)
		default:
			err = p.(*Pin).In(gpio.PullUp, gpio.NoEdge)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// cols returns the column levels as "HLH…".
func cols(m *Matrix) string {
	var b strings.Builder
	for _, c := range m.Cols() {
		if c.Read() == gpio.Low {
			b.WriteByte('L')
		} else {
			b.WriteByte('H')
		}
	}
	return b.String()
}

func press(t *testing.T, m *Matrix, keys string) {
	t.Helper()
	for _, k := range keys {
		if err := m.Press(keypad.Key(k)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMatrixLevels(t *testing.T) {
	m := newMatrix(t, keypad.Layout3x4)
	drive(t, m, "----")
	if got := cols(m); got != "HHH" {
		t.Errorf("idle columns %s", got)
	}
	press(t, m, "5")
	if got := cols(m); got != "HHH" {
		t.Errorf("released rows, 5 down: columns %s, want HHH", got)
	}
	drive(t, m, "L---")
	if got := cols(m); got != "HHH" {
		t.Errorf("row 1 low, 5 down: columns %s, want HHH", got)
	}
	drive(t, m, "-L--")
	if got := cols(m); got != "HLH" {
		t.Errorf("row 2 low, 5 down: columns %s, want HLH", got)
	}
	drive(t, m, "HLHH")
	if got := cols(m); got != "HLH" {
		t.Errorf("row 2 low, others high, 5 down: columns %s, want HLH", got)
	}
	if err := m.Release('5'); err != nil {
		t.Fatal(err)
	}
	if got := cols(m); got != "HHH" {
		t.Errorf("5 released: columns %s", got)
	}
	// A released row reads low when a key joins it to a low column.
	drive(t, m, "L---")
	press(t, m, "14")
	if got := m.Rows()[1].(*Pin).Read(); got != gpio.Low {
		t.Errorf("row 2 joined through 1 and 4 to row 1: %v, want low", got)
	}
}

func TestMatrixGhost(t *testing.T) {
	m := newMatrix(t, keypad.Layout3x4)
	press(t, m, "124")
	// Row 2 alone low: 4 is down, and 5 reads down too through 4, 1, 2.
	drive(t, m, "-L--")
	if got := cols(m); got != "LLH" {
		t.Errorf("ghost: columns %s, want LLH", got)
	}
	if err := m.Release('1'); err != nil {
		t.Fatal(err)
	}
	if got := cols(m); got != "LHH" {
		t.Errorf("without 1: columns %s, want LHH", got)
	}
}

func TestMatrixShorts(t *testing.T) {
	m := newMatrix(t, keypad.Layout3x4)
	press(t, m, "17") // one column, rows 1 and 3
	drive(t, m, "L-H-")
	if n := m.Shorts(); n != 1 {
		t.Errorf("%d shorts, want 1", n)
	}
	drive(t, m, "L---")
	drive(t, m, "-L--")
	if n := m.Shorts(); n != 1 {
		t.Errorf("%d shorts with released rows, want still 1", n)
	}
}

func TestPinErrors(t *testing.T) {
	m := newMatrix(t, keypad.Layout3x4)
	c := m.Cols()[0].(*Pin)
	if err := c.Out(gpio.Low); err == nil {
		t.Error("column Out succeeded")
	}
	if err := c.In(gpio.Float, gpio.NoEdge); err == nil {
		t.Error("column without pull-up accepted")
	}
	if err := c.PWM(gpio.DutyHalf, 0); err == nil {
		t.Error("PWM succeeded")
	}
	w := NewWiegand()
	if err := w.D0().(*Pin).Out(gpio.Low); err == nil {
		t.Error("D0 Out succeeded")
	}
	if s, n := c.String(), c.Number(); s != "COL1" || n != 4 {
		t.Errorf("column 1 is %s(%d)", s, n)
	}
	if f := c.Function(); f != "In" {
		t.Errorf("column Function %q", f)
	}
	r := m.Rows()[0].(*Pin)
	if err := r.Out(gpio.Low); err != nil {
		t.Fatal(err)
	}
	if f := r.Function(); f != "Out" {
		t.Errorf("row Function %q", f)
	}
	if l, ok := r.Driven(); !ok || l != gpio.Low {
		t.Errorf("row Driven %v %v", l, ok)
	}
	if _, err := NewMatrix("123/45"); err == nil {
		t.Error("ragged layout accepted")
	}
	for _, bad := range []string{"123", "1/2/3/4/5/6/7/8/9", "123456789/ABCD*#0EF", "12/1x", "12/31", "/"} {
		if _, err := NewMatrix(bad); err == nil {
			t.Errorf("layout %q accepted", bad)
		}
	}
	if err := m.Press('A'); err == nil {
		t.Error("pressed A on a 3×4 keypad")
	}
	if err := m.TypeKeys(context.Background(), "12A"); err == nil || m.Scans() != 0 {
		t.Error("TypeKeys with a missing key")
	}
	if got := cols(m); got != "HHH" {
		t.Errorf("TypeKeys with a missing key pressed something: %s", got)
	}
}

func TestWaitForEdge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMatrix(t, keypad.Layout3x4)
		drive(t, m, "LLLL")
		c := m.Cols()[1]
		start := time.Now()
		if c.WaitForEdge(30 * time.Millisecond) {
			t.Error("edge with nothing pressed")
		}
		if d := time.Since(start); d != 30*time.Millisecond {
			t.Errorf("timed out after %v", d)
		}
		press(t, m, "2")
		if err := m.Release('2'); err != nil {
			t.Fatal(err)
		}
		// Both edges are queued, then nothing.
		n := 0
		for c.WaitForEdge(0) {
			n++
		}
		if n != 2 {
			t.Errorf("%d queued edges, want 2", n)
		}
		press(t, m, "2")
		if err := c.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			t.Fatal(err)
		}
		if c.WaitForEdge(0) {
			t.Error("In did not discard queued edges")
		}
		if err := m.Release('2'); err != nil {
			t.Fatal(err)
		}
		if c.WaitForEdge(0) {
			t.Error("rising edge reported with FallingEdge")
		}
		// Halt ends a wait without timeout.
		done := make(chan bool)
		go func() { done <- c.WaitForEdge(-1) }()
		synctest.Wait()
		if err := c.(*Pin).Halt(); err != nil {
			t.Fatal(err)
		}
		if <-done {
			t.Error("halted wait reported an edge")
		}
		if m.Rows()[0].(*Pin).WaitForEdge(time.Second) {
			t.Error("edge on a driven row")
		}
	})
}

func TestTapNeedsDriver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMatrix(t, keypad.Layout3x4)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := m.Tap(ctx, '1'); err == nil || !strings.Contains(err.Error(), "no driver") {
			t.Errorf("Tap with no driver = %v", err)
		}
		// Rows low, but nobody scanning: Tap presses and gives up.
		drive(t, m, "LLLL")
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := m.Tap(ctx, '1'); err == nil {
			t.Error("Tap with no scans succeeded")
		}
		if got := cols(m); got != "HHH" {
			t.Errorf("Tap left a key down: %s", got)
		}
		press(t, m, "3")
		if err := m.Tap(context.Background(), '3'); err == nil || !strings.Contains(err.Error(), "already held") {
			t.Errorf("Tap of a held key = %v", err)
		}
	})
}

func TestWiegandSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWiegand()
		for _, p := range []gpio.PinIn{w.D0(), w.D1()} {
			if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
				t.Fatal(err)
			}
		}
		// Record each falling edge as its bit and time.
		type bit struct {
			one bool
			at  time.Duration
		}
		start := time.Now()
		got := make(chan bit, 64)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		for i, p := range []gpio.PinIn{w.D0(), w.D1()} {
			wg.Go(func() {
				for ctx.Err() == nil {
					if p.WaitForEdge(time.Second) {
						got <- bit{i == 1, time.Since(start)}
					}
				}
			})
		}
		if err := w.Send(ctx, "0110"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 3*BitInterval+PulseWidth {
			t.Errorf("Send took %v", d)
		}
		synctest.Wait()
		for i, want := range []bit{{false, 0}, {true, BitInterval}, {true, 2 * BitInterval}, {false, 3 * BitInterval}} {
			if b := <-got; b != want {
				t.Errorf("bit %d = %+v, want %+v", i, b, want)
			}
		}
		if w.D0().Read() != gpio.High || w.D1().Read() != gpio.High {
			t.Error("lines not idle high after Send")
		}
		// Cut short by ctx: lines left high.
		sctx, scancel := context.WithTimeout(ctx, 5*time.Millisecond)
		defer scancel()
		if err := w.Send(sctx, "1111111111"); err == nil {
			t.Error("Send outlived its context")
		}
		if w.D0().Read() != gpio.High || w.D1().Read() != gpio.High {
			t.Error("lines not idle high after a cut Send")
		}
		synctest.Wait()
		if n := len(got); n != 3 {
			t.Errorf("%d bits before the cut, want 3", n)
		}
		for _, bad := range []string{"012", "1 0", "x"} {
			if err := w.Send(ctx, bad); err == nil {
				t.Errorf("Send(%q) accepted", bad)
			}
		}
		if err := w.SendTimed(ctx, "01", time.Millisecond, time.Microsecond); err == nil {
			t.Error("interval shorter than the pulse accepted")
		}
		if err := w.SendTimed(ctx, "01", 0, time.Millisecond); err == nil {
			t.Error("zero pulse width accepted")
		}
	})
}

func TestKeyBits(t *testing.T) {
	for _, tc := range []struct {
		k    keypad.Key
		n    int
		want string
	}{
		{'0', 4, "0000"}, {'9', 4, "1001"}, {'*', 4, "1010"}, {'#', 4, "1011"},
		{'5', 8, "10100101"}, {'0', 8, "11110000"}, {'#', 8, "01001011"},
	} {
		if got, err := KeyBits(tc.k, tc.n); err != nil || got != tc.want {
			t.Errorf("KeyBits(%v, %d) = %q, %v; want %q", tc.k, tc.n, got, err, tc.want)
		}
	}
	if _, err := KeyBits('A', 4); err == nil {
		t.Error("KeyBits(A) accepted")
	}
	if _, err := KeyBits('1', 6); err == nil {
		t.Error("KeyBits(1, 6) accepted")
	}
}

func TestCardBits(t *testing.T) {
	for _, tc := range []struct {
		fc, cn uint32
		n      int
		want   string
	}{
		{1, 1, 26, "1" + "00000001" + "0000000000000001" + "0"},
		{1, 1, 34, "1" + "0000000000000001" + "0000000000000001" + "0"},
		{0, 0, 26, "0" + strings.Repeat("0", 24) + "1"},
		{255, 65535, 26, "0" + strings.Repeat("1", 24) + "1"},
		{0x80, 0x0001, 26, "1" + "10000000" + "0000000000000001" + "0"},
	} {
		if got, err := CardBits(tc.fc, tc.cn, tc.n); err != nil || got != tc.want {
			t.Errorf("CardBits(%d, %d, %d) = %q, %v; want %q", tc.fc, tc.cn, tc.n, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ fc, cn uint32 }{{256, 0}, {0, 65536}} {
		if _, err := CardBits(tc.fc, tc.cn, 26); err == nil {
			t.Errorf("CardBits(%d, %d, 26) accepted", tc.fc, tc.cn)
		}
	}
	if _, err := CardBits(65536, 0, 34); err == nil {
		t.Error("17-bit facility accepted")
	}
	if _, err := CardBits(1, 1, 35); err == nil {
		t.Error("35 bits accepted")
	}
}
