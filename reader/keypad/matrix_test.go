package keypad_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
	"github.com/latchdoor/latch/reader/keypad/keypadtest"
)

// The driver tests run in a synctest bubble: time.Now, timers and sleeps
// use the bubble's fake clock, which moves only when every goroutine is
// blocked. advance moves that clock by d; no wall time passes.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// matrixRig is an emulated keypad with a keypad.Matrix running on it.
type matrixRig struct {
	t    *testing.T
	ctx  context.Context // for TypeKeys: ends after a fake day, failing a test that waits for nothing
	em   *keypadtest.Matrix
	m    *keypad.Matrix
	keys chan keypad.Key
	stop context.CancelFunc
	done chan error
}

func startMatrix(t *testing.T, layout string, opts *keypad.MatrixOpts) *matrixRig {
	t.Helper()
	em, err := keypadtest.NewMatrix(layout)
	if err != nil {
		t.Fatal(err)
	}
	return startRig(t, em, em.Rows(), em.Cols(), opts)
}

// startRig runs a keypad.Matrix on the given pins of em.
func startRig(t *testing.T, em *keypadtest.Matrix, rows []gpio.PinOut, cols []gpio.PinIn, opts *keypad.MatrixOpts) *matrixRig {
	t.Helper()
	m, err := keypad.NewMatrix(rows, cols, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &matrixRig{t: t, em: em, m: m, keys: make(chan keypad.Key, 100), done: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	r.ctx, r.stop = ctx, cancel
	go func() { r.done <- m.Run(context.WithoutCancel(ctx), func(k keypad.Key) { r.keys <- k }) }()
	// Let the first scan finish: it sets where the keypad stands.
	advance(time.Millisecond)
	return r
}

// typed returns the keys delivered since the last call.
func (r *matrixRig) typed() string {
	synctest.Wait()
	var b strings.Builder
	for {
		select {
		case k := <-r.keys:
			b.WriteByte(byte(k))
		default:
			return b.String()
		}
	}
}

// close halts the keypad and checks how Run returned.
func (r *matrixRig) close() {
	r.t.Helper()
	r.stop()
	if err := r.m.Halt(); err != nil {
		r.t.Errorf("Halt: %v", err)
	}
	if err := <-r.done; err != nil {
		r.t.Errorf("Run returned %v after Halt, want nil", err)
	}
}

func (r *matrixRig) press(keys string) {
	r.t.Helper()
	for i := 0; i < len(keys); i++ {
		if err := r.em.Press(keypad.Key(keys[i])); err != nil {
			r.t.Fatal(err)
		}
	}
	synctest.Wait()
}

func (r *matrixRig) release(keys string) {
	r.t.Helper()
	for i := 0; i < len(keys); i++ {
		if err := r.em.Release(keypad.Key(keys[i])); err != nil {
			r.t.Fatal(err)
		}
	}
	synctest.Wait()
}

func TestMatrixPress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startMatrix(t, keypad.Layout3x4, nil)
		defer r.close()
		r.press("5")
		advance(19 * time.Millisecond)
		if got := r.typed(); got != "" {
			t.Fatalf("key %q before the debounce time", got)
		}
		advance(2 * time.Millisecond)
		if got := r.typed(); got != "5" {
			t.Fatalf("typed %q, want 5", got)
		}
		r.release("5")
		advance(time.Second)
		if got := r.typed(); got != "" {
			t.Fatalf("release typed %q", got)
		}
	})
}

func TestMatrixTypeKeys(t *testing.T) {
	for _, tc := range []struct {
		layout, keys string
	}{
		{keypad.Layout3x4, "1234#"},
		{keypad.Layout3x4, "*0#987654321"},
		{keypad.Layout3x4, "5555"},
		{keypad.Layout4x4, "A1B2C3D4*0#"},
		{"12/34", "4321"},
	} {
		t.Run(tc.keys, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := startMatrix(t, tc.layout, &keypad.MatrixOpts{Layout: tc.layout})
				defer r.close()
				if err := r.em.TypeKeys(r.ctx, tc.keys); err != nil {
					t.Fatal(err)
				}
				if got := r.typed(); got != tc.keys {
					t.Errorf("typed %q, want %q", got, tc.keys)
				}
			})
		})
	}
}

// Contacts chatter for a few milliseconds when they close and open: one
// press, however bouncy, is one key.
func TestMatrixBounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startMatrix(t, keypad.Layout3x4, nil)
		defer r.close()
		chatter := func(first, second func(string)) {
			for _, d := range []time.Duration{300, 1200, 500, 2000, 800} {
				first("8")
				advance(d * time.Microsecond)
				second("8")
				advance(d * time.Microsecond)
			}
			first("8")
		}
		chatter(r.press, r.release) // ends pressed
		advance(100 * time.Millisecond)
		chatter(r.release, r.press) // ends released
		advance(100 * time.Millisecond)
		if got := r.typed(); got != "8" {
			t.Fatalf("bouncy press typed %q, want one 8", got)
		}
		// Chatter that never settles for the debounce time is no key.
		for range 10 {
			r.press("3")
			advance(5 * time.Millisecond)
			r.release("3")
			advance(5 * time.Millisecond)
		}
		advance(time.Second)
		if got := r.typed(); got != "" {
			t.Fatalf("chatter typed %q", got)
		}
		if err := r.em.TypeKeys(r.ctx, "3"); err != nil {
			t.Fatal(err)
		}
		if got := r.typed(); got != "3" {
			t.Fatalf("typed %q after chatter, want 3", got)
		}
	})
}

func TestMatrixTwoKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startMatrix(t, keypad.Layout3x4, nil)
		defer r.close()
		checkTwoKeys(t, r)
	})
}

// checkTwoKeys checks the two-key lockout on a running 3×4 keypad.
func checkTwoKeys(t *testing.T, r *matrixRig) {
	t.Helper()
	// Two keys pressed together: nothing.
	r.press("15")
	advance(time.Second)
	r.release("15")
	advance(time.Second)
	if got := r.typed(); got != "" {
		t.Fatalf("two keys at once typed %q", got)
	}

	// A second key while the first is held: only the first, and not
	// the second when the first lets go.
	r.press("2")
	advance(100 * time.Millisecond)
	r.press("6")
	advance(100 * time.Millisecond)
	r.release("2")
	advance(100 * time.Millisecond)
	r.release("6")
	advance(100 * time.Millisecond)
	if got := r.typed(); got != "2" {
		t.Fatalf("overlapping keys typed %q, want 2", got)
	}

	// Two keys in one column, one after the other.
	r.press("1")
	advance(100 * time.Millisecond)
	r.press("7")
	advance(100 * time.Millisecond)
	r.release("17")
	advance(100 * time.Millisecond)
	if got := r.typed(); got != "1" {
		t.Fatalf("same-column keys typed %q, want 1", got)
	}

	// Three held keys make a fourth read pressed (a ghost): nothing.
	r.press("124") // with 5, the corners of a rectangle
	advance(time.Second)
	r.release("124")
	advance(time.Second)
	if got := r.typed(); got != "" {
		t.Fatalf("ghosting keys typed %q", got)
	}

	if err := r.em.TypeKeys(r.ctx, "9"); err != nil {
		t.Fatal(err)
	}
	if got := r.typed(); got != "9" {
		t.Fatalf("typed %q afterwards, want 9", got)
	}
	// Released rows are high impedance: two keys in one column never
	// connect a row driven high to one driven low.
	if n := r.em.Shorts(); n != 0 {
		t.Errorf("%d shorts between rows", n)
	}
}

func TestMatrixHeldTenSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startMatrix(t, keypad.Layout4x4, nil)
		defer r.close()
		r.press("D")
		advance(100 * time.Millisecond)
		scans := r.em.Scans()
		advance(10 * time.Second)
		if n := r.em.Scans() - scans; n != 0 {
			t.Errorf("%d scans while the key was held", n)
		}
		r.release("D")
		advance(100 * time.Millisecond)
		if got := r.typed(); got != "D" {
			t.Fatalf("key held 10 s typed %q, want one D", got)
		}
	})
}

func TestMatrixIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startMatrix(t, keypad.Layout3x4, nil)
		defer r.close()
		scans := r.em.Scans()
		advance(time.Hour)
		if n := r.em.Scans() - scans; n != 0 {
			t.Errorf("%d scans in an idle hour", n)
		}
		// Waiting, every row is driven low so any key pulls its column.
		for _, p := range r.em.Rows() {
			if l, ok := p.(*keypadtest.Pin).Driven(); !ok || l != gpio.Low {
				t.Errorf("idle row %s: driven %v %v, want low", p, l, ok)
			}
		}
	})
}

func TestMatrixKeyHeldAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em, err := keypadtest.NewMatrix(keypad.Layout3x4)
		if err != nil {
			t.Fatal(err)
		}
		if err := em.Press('0'); err != nil {
			t.Fatal(err)
		}
		m, err := keypad.NewMatrix(em.Rows(), em.Cols(), nil)
		if err != nil {
			t.Fatal(err)
		}
		keys := make(chan keypad.Key, 10)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx, func(k keypad.Key) { keys <- k }) }()
		advance(time.Second)
		if err := em.Release('0'); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		if len(keys) != 0 {
			t.Fatalf("key held at start typed %c", <-keys)
		}
		if err := em.TypeKeys(ctx, "0"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(keys) != 1 || <-keys != '0' {
			t.Fatal("no key after releasing the held one")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	})
}

func TestMatrixHalt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		em, err := keypadtest.NewMatrix(keypad.Layout3x4)
		if err != nil {
			t.Fatal(err)
		}
		m, err := keypad.NewMatrix(em.Rows(), em.Cols(), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Run(context.Background(), func(keypad.Key) {}) }()
		synctest.Wait()
		if err := m.Run(context.Background(), func(keypad.Key) {}); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Errorf("second Run = %v, want already running", err)
		}
		if err := m.Halt(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run after Halt = %v, want nil", err)
		}
		for _, p := range em.Rows() {
			if l, ok := p.(*keypadtest.Pin).Driven(); ok {
				t.Errorf("halted row %s still driven %v", p, l)
			}
		}
		// A halted keypad can run again.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		keys := make(chan keypad.Key, 10)
		go func() { done <- m.Run(ctx, func(k keypad.Key) { keys <- k }) }()
		synctest.Wait()
		if err := em.TypeKeys(ctx, "#"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want deadline exceeded", err)
		}
		if len(keys) != 1 {
			t.Errorf("%d keys after restart, want 1", len(keys))
		}
		if err := m.Run(ctx, nil); err == nil {
			t.Error("Run with nil onKey succeeded")
		}
	})
}

// stuckLow is a column shorted to ground.
type stuckLow struct{ *keypadtest.Pin }

func (stuckLow) Read() gpio.Level { return gpio.Low }

// lateStuck reads low once armed: a short to ground that appears after
// start.
type lateStuck struct {
	*keypadtest.Pin
	armed chan struct{}
}

func (p lateStuck) Read() gpio.Level {
	select {
	case <-p.armed:
		return gpio.Low
	default:
		return p.Pin.Read()
	}
}

// unexplained reads low only while every row is driven low, so no scan of
// one row at a time can find what pulls it: nothing a keypad does.
type unexplained struct {
	*keypadtest.Pin
	rows []gpio.PinOut
}

func (p unexplained) Read() gpio.Level {
	for _, r := range p.rows {
		if l, ok := r.(*keypadtest.Pin).Driven(); !ok || l != gpio.Low {
			return p.Pin.Read()
		}
	}
	return gpio.Low
}

// Column faults neither type keys nor keep the driver scanning.
func TestMatrixColumnFault(t *testing.T) {
	t.Run("shorted to ground", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			em, err := keypadtest.NewMatrix(keypad.Layout3x4)
			if err != nil {
				t.Fatal(err)
			}
			cols := em.Cols()
			armed := make(chan struct{})
			cols[1] = lateStuck{cols[1].(*keypadtest.Pin), armed}
			r := startRig(t, em, em.Rows(), cols, nil)
			defer r.close()
			close(armed)
			// Every row now reads a key in column 2: each press is
			// ambiguous.
			for _, k := range "1593" {
				r.press(string(k))
				advance(100 * time.Millisecond)
				r.release(string(k))
				advance(100 * time.Millisecond)
			}
			if got := r.typed(); got != "" {
				t.Errorf("typed %q with a column shorted to ground", got)
			}
			scans := em.Scans()
			advance(time.Hour)
			if n := em.Scans() - scans; n != 0 {
				t.Errorf("%d scans in an hour with a column shorted", n)
			}
		})
	})
	t.Run("low with no key", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			em, err := keypadtest.NewMatrix(keypad.Layout3x4)
			if err != nil {
				t.Fatal(err)
			}
			cols := em.Cols()
			cols[2] = unexplained{cols[2].(*keypadtest.Pin), em.Rows()}
			var logs bytes.Buffer
			r := startRig(t, em, em.Rows(), cols, &keypad.MatrixOpts{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			defer r.close()
			scans := em.Scans()
			advance(10 * time.Second) // short: a driver that spins scanning must still end
			if n := em.Scans() - scans; n != 0 {
				t.Errorf("%d scans in 10 s with a column low for no key", n)
			}
			if scans > 4 {
				t.Errorf("%d scans before giving up, want at most 4", scans)
			}
			if !strings.Contains(logs.String(), "check the wiring") {
				t.Errorf("no warning logged: %q", logs.String())
			}
			// The other columns still work.
			if err := em.TypeKeys(r.ctx, "14"); err != nil {
				t.Fatal(err)
			}
			if got := r.typed(); got != "14" {
				t.Errorf("typed %q, want 14", got)
			}
		})
	})
}

type failIn struct{ *keypadtest.Pin }

func (failIn) In(gpio.Pull, gpio.Edge) error { return errors.New("line busy") }

// outOnly is a row that cannot be an input.
type outOnly struct{ gpio.PinOut }

func TestNewMatrixErrors(t *testing.T) {
	em, err := keypadtest.NewMatrix(keypad.Layout3x4)
	if err != nil {
		t.Fatal(err)
	}
	rows, cols := em.Rows(), em.Cols()
	with := func(p []gpio.PinIn, i int, x gpio.PinIn) []gpio.PinIn {
		q := append([]gpio.PinIn(nil), p...)
		q[i] = x
		return q
	}
	for _, tc := range []struct {
		name string
		rows []gpio.PinOut
		cols []gpio.PinIn
		opts *keypad.MatrixOpts
		err  string
	}{
		{"no rows", nil, cols, nil, "0 row pins"},
		{"nine rows", make([]gpio.PinOut, 9), cols, nil, "9 row pins"},
		{"no columns", rows, nil, nil, "0 column pins"},
		{"nil pin", rows, with(cols, 2, nil), nil, "pin 6 is nil"},
		{"pin twice", rows, with(cols, 2, cols[0]), nil, "COL1 is given twice"},
		{"3x3 without layout", rows[:3], cols, nil, "needs MatrixOpts.Layout"},
		{"layout for another size", rows, cols, &keypad.MatrixOpts{Layout: keypad.Layout4x4}, "row 1 has 4 keys"},
		{"bad key", rows, cols, &keypad.MatrixOpts{Layout: "123/456/789/*0%"}, "not a key"},
		{"negative debounce", rows, cols, &keypad.MatrixOpts{Debounce: -time.Millisecond}, "negative"},
		{"column stuck low", rows, with(cols, 1, stuckLow{cols[1].(*keypadtest.Pin)}), nil, "column COL2 reads low"},
		{"column In fails", rows, with(cols, 0, failIn{cols[0].(*keypadtest.Pin)}), nil, "line busy"},
	} {
		m, err := keypad.NewMatrix(tc.rows, tc.cols, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "keypad: matrix: ") {
			t.Errorf("%s: NewMatrix = %v, %v; want error containing %q", tc.name, m, err, tc.err)
		}
	}
	// A custom size with its own layout, and String.
	m, err := keypad.NewMatrix(rows[:2], cols[:2], &keypad.MatrixOpts{Layout: "12/34"})
	if err != nil {
		t.Fatal(err)
	}
	if s := m.String(); s != "keypad.Matrix(2x2, rows ROW1 ROW2, cols COL1 COL2)" {
		t.Errorf("String() = %q", s)
	}
	// Rows that can only be outputs are driven high when released.
	out := []gpio.PinOut{outOnly{rows[0]}, outOnly{rows[1]}, outOnly{rows[2]}, outOnly{rows[3]}}
	if _, err := keypad.NewMatrix(out, cols, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range rows {
		if l, ok := p.(*keypadtest.Pin).Driven(); !ok || l != gpio.High {
			t.Errorf("released output-only row %s: %v %v, want driven high", p, l, ok)
		}
	}
}

// The driver and the emulator on the real clock, as latchd's simulator
// runs them: TypeKeys waits for the scans, so every tap is exactly one key
// however the goroutines are scheduled.
func TestMatrixRealClock(t *testing.T) {
	em, err := keypadtest.NewMatrix(keypad.Layout3x4)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keypad.NewMatrix(em.Rows(), em.Cols(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := make(chan keypad.Key, 100)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(k keypad.Key) { keys <- k }) }()
	const typed = "1234#*0987"
	if err := em.TypeKeys(ctx, typed); err != nil {
		t.Fatal(err)
	}
	if err := m.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	close(keys)
	var got []byte
	for k := range keys {
		got = append(got, byte(k))
	}
	if string(got) != typed {
		t.Fatalf("typed %q, want %q", got, typed)
	}
}
