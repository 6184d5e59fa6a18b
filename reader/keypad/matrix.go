package keypad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/pin"
)

// MatrixOpts configures a Matrix. The zero value selects every default.
type MatrixOpts struct {
	// Layout names the keys, rows top to bottom separated by '/', each
	// row's keys left to right as seen from the front: Layout3x4 is
	// "123/456/789/*0#". Each key may appear once; keys are '0'–'9', '*',
	// '#' and 'A'–'D'. Empty selects Layout3x4 for 4 rows and 3 columns and
	// Layout4x4 for 4 rows and 4 columns; other sizes need a Layout.
	Layout string
	// Debounce is how long a key must read the same, pressed or released,
	// before it counts. Default 20 ms; raise it for a worn keypad whose
	// contacts chatter longer, at the cost of missing very short taps.
	Debounce time.Duration
	// Settle is the pause between driving a row low and reading the
	// columns, for the column to recover through its pull-up from the
	// previous row. Default 50 µs, enough for the Pi's internal pull-ups
	// and a metre of ribbon cable; raise it for longer wires.
	Settle time.Duration
	// Expander, if set, says the rows and columns are pins of an I/O
	// expander on I²C, and how to read and wait on them; nil for pins
	// that report edges, such as the Pi's own GPIO.
	Expander *Expander
	// Logger receives wiring warnings (a column stuck low). Key values are
	// never logged: they are PIN digits. Nil discards.
	Logger *slog.Logger
}

// Matrix is a matrix keypad on GPIO: rows driven low one at a time,
// columns read with pull-ups.
//
// While no key changes it costs almost nothing: every row is driven low, so
// a key press pulls its column low, and goroutines sleep in WaitForEdge on
// the columns. A scan runs only after a column changes, and again once the
// debounce time has passed to confirm the change. On an I/O expander
// (MatrixOpts.Expander) the wait is on the expander's interrupt line, or a
// read of every column at once each poll period.
type Matrix struct {
	rows     []gpio.PinOut
	cols     []gpio.PinIn
	l        layout
	debounce time.Duration
	settle   time.Duration
	x        *Expander // nil: the columns wait for edges themselves
	log      *slog.Logger
	run      runner
}

var _ conn.Resource = (*Matrix)(nil)

// NewMatrix returns a Matrix on the given row and column pins, rows top to
// bottom and columns left to right as the layout names them. It configures
// the columns as inputs with pull-ups and edge detection, releases the rows,
// and checks that no column reads low with no row driven: a column that does
// is shorted to ground or not a keypad line.
//
// A row pin that also implements gpio.PinIn (as every Raspberry Pi GPIO
// does) is released to a high-impedance input with pull-up when it is not
// being scanned, so two held keys in one column never connect a low row to
// a high one. A row that is only a gpio.PinOut is driven high instead; see
// the package documentation for the series resistors that case needs.
func NewMatrix(rows []gpio.PinOut, cols []gpio.PinIn, opts *MatrixOpts) (*Matrix, error) {
	var o MatrixOpts
	if opts != nil {
		o = *opts
	}
	if len(rows) == 0 || len(rows) > maxLines {
		return nil, fmt.Errorf("keypad: matrix: %d row pins, want 1 to %d", len(rows), maxLines)
	}
	if len(cols) == 0 || len(cols) > maxLines {
		return nil, fmt.Errorf("keypad: matrix: %d column pins, want 1 to %d", len(cols), maxLines)
	}
	pins := make([]pin.Pin, 0, len(rows)+len(cols)+1)
	for _, p := range rows {
		pins = append(pins, p)
	}
	for _, p := range cols {
		pins = append(pins, p)
	}
	var x *Expander
	if o.Expander != nil {
		c := *o.Expander
		x = &c
		if x.Interrupt != nil {
			pins = append(pins, x.Interrupt)
		}
	}
	if err := checkPins(pins); err != nil {
		return nil, fmt.Errorf("keypad: matrix: %w", err)
	}
	if x != nil {
		if err := x.check(cols); err != nil {
			return nil, fmt.Errorf("keypad: matrix: %w", err)
		}
	}
	if o.Layout == "" {
		switch {
		case len(rows) == 4 && len(cols) == 3:
			o.Layout = Layout3x4
		case len(rows) == 4 && len(cols) == 4:
			o.Layout = Layout4x4
		default:
			return nil, fmt.Errorf("keypad: matrix: %d×%d keypad needs MatrixOpts.Layout", len(rows), len(cols))
		}
	}
	l, err := parseLayout(o.Layout, len(rows), len(cols))
	if err != nil {
		return nil, fmt.Errorf("keypad: matrix: %w", err)
	}
	if o.Debounce < 0 || o.Settle < 0 {
		return nil, errors.New("keypad: matrix: negative Debounce or Settle")
	}
	if o.Debounce == 0 {
		o.Debounce = 20 * time.Millisecond
	}
	if o.Settle == 0 {
		o.Settle = 50 * time.Microsecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Matrix{
		rows:     append([]gpio.PinOut(nil), rows...),
		cols:     append([]gpio.PinIn(nil), cols...),
		l:        l,
		debounce: o.Debounce,
		settle:   o.Settle,
		x:        x,
		log:      o.Logger,
	}
	if err := m.arm(); err != nil {
		return nil, err
	}
	if err := m.releaseRows(); err != nil {
		return nil, err
	}
	time.Sleep(m.settle)
	p, err := m.pattern()
	if err != nil {
		return nil, err
	}
	for c, col := range m.cols {
		if p&(1<<c) != 0 {
			return nil, fmt.Errorf("keypad: matrix: column %s reads low with no row driven: check the wiring (short to ground, or not a keypad column?)", col)
		}
	}
	return m, nil
}

// arm configures the columns as inputs with pull-ups, and sets up what Run
// waits on for a change: the columns' edges, or the expander's interrupt
// line.
func (m *Matrix) arm() error {
	edge := gpio.BothEdges
	if m.x != nil {
		edge = gpio.NoEdge
	}
	for _, c := range m.cols {
		if err := c.In(gpio.PullUp, edge); err != nil {
			return fmt.Errorf("keypad: matrix: column %s: %w", c, err)
		}
	}
	if m.x != nil && m.x.Interrupt != nil {
		if err := m.x.Interrupt.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			return fmt.Errorf("keypad: matrix: interrupt %s: %w", m.x.Interrupt, err)
		}
	}
	return nil
}

// wakers returns the pins whose edges tell Run that a column may have
// changed: the columns themselves, or the expander's interrupt line; none
// for an expander that is polled.
func (m *Matrix) wakers() []gpio.PinIn {
	switch {
	case m.x == nil:
		return m.cols
	case m.x.Interrupt != nil:
		return []gpio.PinIn{m.x.Interrupt}
	}
	return nil
}

// poll reports whether Run must read the columns on a timer while it
// waits: on an expander without an interrupt line, or with one that reads
// low (a change not read yet, or a line without its pull-up).
func (m *Matrix) poll() bool {
	return m.x != nil && (m.x.Interrupt == nil || m.x.Interrupt.Read() == gpio.Low)
}

// checkPins refuses nil pins and a pin given twice.
func checkPins(pins []pin.Pin) error {
	seen := map[string]bool{}
	for i, p := range pins {
		if p == nil {
			return fmt.Errorf("pin %d is nil", i)
		}
		if n := p.Name(); n != "" {
			if seen[n] {
				return fmt.Errorf("pin %s is given twice", n)
			}
			seen[n] = true
		}
	}
	return nil
}

// String returns the keypad's size and pins.
func (m *Matrix) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keypad.Matrix(%dx%d, rows", len(m.rows), len(m.cols))
	for _, p := range m.rows {
		b.WriteString(" " + p.Name())
	}
	b.WriteString(", cols")
	for _, p := range m.cols {
		b.WriteString(" " + p.Name())
	}
	b.WriteString(")")
	return b.String()
}

// Halt stops Run, waiting for it to return, and releases every row so that
// no key press drives a column.
func (m *Matrix) Halt() error {
	m.run.stop()
	return m.releaseRows()
}

// Run scans the keypad until ctx ends or Halt is called, calling onKey on
// the calling goroutine once for each key press. onKey should return
// quickly (hand the key to a channel): keys typed while it runs may be
// missed.
//
// A key counts once it has read pressed for the Debounce time, and once
// only however long it is held. A press during which two keys or more read
// pressed delivers nothing (see the package documentation). A key already
// held when Run starts is not delivered.
//
// Run returns nil after Halt, ctx.Err() when ctx ends, or the first pin
// error. Only one Run may be in progress at a time.
func (m *Matrix) Run(ctx context.Context, onKey func(Key)) (err error) {
	if onKey == nil {
		return errors.New("keypad: matrix: Run needs an onKey function")
	}
	ctx, end, err := m.run.start(ctx)
	if err != nil {
		return fmt.Errorf("keypad: matrix: %w", err)
	}
	defer end()
	defer func() {
		if rerr := m.releaseRows(); err == nil {
			err = rerr
		}
	}()
	// Arm the columns again: a previous Run halted them.
	if err := m.arm(); err != nil {
		return err
	}
	// wake holds one pending "a column changed" note; more edges before it
	// is taken add nothing, since the loop reads the levels anyway.
	wake := make(chan struct{}, 1)
	// Deferred after releaseRows, so it runs first: the watchers stop
	// before the rows are released.
	defer watchers(ctx, m.log, m.wakers(), func(context.Context, int) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pollTimer := time.NewTimer(time.Hour)
	pollTimer.Stop()
	defer pollTimer.Stop()

	// The first scan, which leaves every row driven low, sets where the
	// keypad stands.
	d := debouncer{l: m.l, wait: m.debounce}
	// Edges are only a hint that something changed: the column levels with
	// every row low are compared with what the last scan implies, and a
	// scan runs only if they differ. The edges a scan causes itself leave
	// the levels as the scan found them, so they trigger nothing.
	var (
		scan    = true
		retries int    // scans in a row that disagreed with the columns
		stuck   uint64 // columns low that no scan explains, once retries ran out
		isStuck bool
	)
	for {
		if scan {
			s, err := m.scan()
			if err != nil {
				return err
			}
			k, ok, err := d.update(s, time.Now())
			if err != nil {
				return fmt.Errorf("keypad: matrix: %w", err)
			}
			if ok {
				onKey(k)
			}
		}
		p, err := m.pattern()
		if err != nil {
			return err
		}
		switch {
		case p == d.expected():
			retries, isStuck = 0, false
		case isStuck && p == stuck:
			// The same unexplained columns: wait for them to change.
		case !scan || retries < 3:
			// Something changed since the last scan, or during it.
			if scan {
				retries++
			}
			scan = true
			continue
		case d.expected()&^p != 0:
			// A column the keys held should pull low reads high: a key
			// went up, maybe between the scan and this read. That is no
			// wiring fault; the debounce timer scans again.
		default:
			stuck, isStuck = p, true
			m.log.Warn("keypad: column low with no key found on any row: check the wiring", "columns", fmt.Sprintf("%#x", p))
		}
		var tick <-chan time.Time
		if at, ok := d.due(); ok {
			wait := time.Until(at)
			if wait <= 0 {
				scan = true
				continue
			}
			timer.Reset(wait)
			tick = timer.C
		}
		var polled <-chan time.Time
		if m.poll() {
			pollTimer.Reset(m.x.Poll)
			polled = pollTimer.C
		}
		select {
		case <-ctx.Done():
			return result(ctx)
		case <-wake:
			scan = false
		case <-polled:
			scan = false
		case <-tick:
			scan = true
		}
		pollTimer.Stop()
	}
}

// scan drives each row low alone and returns the keys that read pressed:
// bit r*cols+c for row r, column c. It leaves every row driven low.
func (m *Matrix) scan() (uint64, error) {
	if err := m.releaseRows(); err != nil {
		return 0, err
	}
	var s uint64
	for r, row := range m.rows {
		if err := row.Out(gpio.Low); err != nil {
			return 0, fmt.Errorf("keypad: matrix: row %s: %w", row, err)
		}
		time.Sleep(m.settle)
		p, err := m.pattern()
		if err != nil {
			return 0, err
		}
		s |= p << (r * len(m.cols))
		if err := m.release(r); err != nil {
			return 0, err
		}
	}
	return s, m.driveRowsLow()
}

// pattern returns the columns that read low: bit c for column c. On an
// expander it reads them all at once.
func (m *Matrix) pattern() (uint64, error) {
	if m.x != nil {
		return m.x.lowColumns(len(m.cols))
	}
	var p uint64
	for c, col := range m.cols {
		if col.Read() == gpio.Low {
			p |= 1 << c
		}
	}
	return p, nil
}

// release stops driving row r low: an input with pull-up if the pin can be
// one, else driven high.
func (m *Matrix) release(r int) error {
	var err error
	if in, ok := m.rows[r].(gpio.PinIn); ok {
		err = in.In(gpio.PullUp, gpio.NoEdge)
	} else {
		err = m.rows[r].Out(gpio.High)
	}
	if err != nil {
		return fmt.Errorf("keypad: matrix: row %s: %w", m.rows[r], err)
	}
	return nil
}

func (m *Matrix) releaseRows() error {
	for r := range m.rows {
		if err := m.release(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *Matrix) driveRowsLow() error {
	for _, row := range m.rows {
		if err := row.Out(gpio.Low); err != nil {
			return fmt.Errorf("keypad: matrix: row %s: %w", row, err)
		}
	}
	return nil
}
