package keypadtest

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"

	"github.com/latchdoor/latch/reader/keypad"
)

// Matrix is an emulated matrix keypad: a switch at each crossing of a row
// and a column wire, no diodes, no pull-ups of its own.
//
// A column reads low when a pressed key connects it, directly or through
// other pressed keys, to a row driven low; otherwise its pull-up holds it
// high. So three held keys at the corners of a rectangle make the fourth
// read pressed, as on real keypads. A released row (In) reads the same way;
// a driven row reads what it drives.
//
// The Matrix also watches the keypad being scanned: a scan is the driver
// driving one row low at a time, reading the columns, then driving every
// row low again. Tap and TypeKeys use this to hold each key exactly as long
// as the driver needs to take it.
type Matrix struct {
	mu      sync.Mutex
	nr, nc  int
	keys    []keypad.Key // key i at row i/nc, column i%nc
	rows    []*Pin
	cols    []*Pin
	pressed uint64 // bit i: key i is down

	// Scan watching.
	inScan   bool
	seenDown uint64   // keys read pressed in the scan in progress
	seenUp   uint64   // keys read released in the scan in progress
	down, up []uint64 // per key: completed scans that read it pressed, released
	scans    uint64
	scanned  chan struct{} // closed and replaced after each completed scan
	shorted  bool
	shorts   uint64

	// changed is called at the end of every update, for devices wired to
	// the keypad (an Expander) whose outputs follow its levels.
	changed []func()
}

// NewMatrix returns an emulated keypad with the given key map, in the form
// of keypad.Layout3x4 ("123/456/789/*0#"): 2 to 8 rows of 1 to 8 keys
// each, keys '0'–'9', '*', '#' and 'A'–'D', each at most once. Its rows are
// named ROW1… and its columns COL1…, top to bottom and left to right.
func NewMatrix(layout string) (*Matrix, error) {
	lines := strings.Split(layout, "/")
	if len(lines) < 2 || len(lines) > 8 {
		return nil, fmt.Errorf("keypadtest: layout %q: %d rows, want 2 to 8", layout, len(lines))
	}
	nc := len(lines[0])
	if nc < 1 || nc > 8 {
		return nil, fmt.Errorf("keypadtest: layout %q: %d columns, want 1 to 8", layout, nc)
	}
	if err := keypad.CheckLayout(layout, len(lines), nc); err != nil {
		return nil, fmt.Errorf("keypadtest: %w", err)
	}
	m := &Matrix{nr: len(lines), nc: nc, scanned: make(chan struct{})}
	for _, line := range lines {
		for i := 0; i < len(line); i++ {
			m.keys = append(m.keys, keypad.Key(line[i]))
		}
	}
	m.down = make([]uint64, len(m.keys))
	m.up = make([]uint64, len(m.keys))
	for r := range m.nr {
		m.rows = append(m.rows, newPin(&m.mu, m, roleRow, fmt.Sprintf("ROW%d", r+1), r))
	}
	for c := range m.nc {
		m.cols = append(m.cols, newPin(&m.mu, m, roleCol, fmt.Sprintf("COL%d", c+1), m.nr+c))
	}
	return m, nil
}

// Rows returns the row pins, top to bottom, for keypad.NewMatrix. Each is
// a *Pin.
func (m *Matrix) Rows() []gpio.PinOut {
	out := make([]gpio.PinOut, len(m.rows))
	for i, p := range m.rows {
		out[i] = p
	}
	return out
}

// Cols returns the column pins, left to right, for keypad.NewMatrix. Each
// is a *Pin.
func (m *Matrix) Cols() []gpio.PinIn {
	out := make([]gpio.PinIn, len(m.cols))
	for i, p := range m.cols {
		out[i] = p
	}
	return out
}

// Press pushes key k down and holds it until Release. Pressing a key that
// is already down does nothing.
func (m *Matrix) Press(k keypad.Key) error {
	i, err := m.index(k)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pressed |= 1 << i
	m.update()
	return nil
}

// Release lets key k up. Releasing a key that is up does nothing.
func (m *Matrix) Release(k keypad.Key) error {
	i, err := m.index(k)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pressed &^= 1 << i
	m.update()
	return nil
}

// Tap waits for a driver to be running (every row driven low after a
// scan), presses k, holds it until two completed scans have read it
// pressed, releases it, and returns once two completed scans have read it
// released.
//
// keypad.Matrix scans once when a column changes and again a debounce time
// later to confirm, so Tap returns once the driver has taken the key and
// seen it go up again: about two debounce times, on whatever clock the
// driver runs. It needs a driver scanning the pins; without one it waits
// until ctx ends, releases k and returns ctx's error. Tapping a key that is
// already held is an error.
func (m *Matrix) Tap(ctx context.Context, k keypad.Key) error {
	i, err := m.index(k)
	if err != nil {
		return err
	}
	bit := uint64(1) << i
	if err := m.waitScans(ctx, m.running); err != nil {
		return fmt.Errorf("keypadtest: Tap %s: no driver scanning: %w", k, err)
	}
	m.mu.Lock()
	if m.pressed&bit != 0 {
		m.mu.Unlock()
		return fmt.Errorf("keypadtest: Tap %s: the key is already held", k)
	}
	base := m.down[i]
	m.pressed |= bit
	m.update()
	m.mu.Unlock()

	err = m.waitScans(ctx, func() bool { return m.down[i] >= base+2 })

	m.mu.Lock()
	base = m.up[i]
	m.pressed &^= bit
	m.update()
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("keypadtest: Tap %s: %w", k, err)
	}
	if err := m.waitScans(ctx, func() bool { return m.up[i] >= base+2 }); err != nil {
		return fmt.Errorf("keypadtest: Tap %s: %w", k, err)
	}
	return nil
}

// TypeKeys taps each key of keys in turn, as Tap does: TypeKeys(ctx,
// "1234#") types a PIN and its terminator. Keys not on the keypad are an
// error before anything is pressed.
func (m *Matrix) TypeKeys(ctx context.Context, keys string) error {
	for i := 0; i < len(keys); i++ {
		if _, err := m.index(keypad.Key(keys[i])); err != nil {
			return err
		}
	}
	for i := 0; i < len(keys); i++ {
		if err := m.Tap(ctx, keypad.Key(keys[i])); err != nil {
			return err
		}
	}
	return nil
}

// Scans returns how many complete scans of the keypad the driver has made.
func (m *Matrix) Scans() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.scans
}

// Shorts returns how many times a row driven high was connected through
// pressed keys to a row driven low: two outputs fighting, which can damage
// a GPIO pin on real hardware.
func (m *Matrix) Shorts() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shorts
}

func (m *Matrix) index(k keypad.Key) (int, error) {
	for i, x := range m.keys {
		if x == k {
			return i, nil
		}
	}
	return 0, fmt.Errorf("keypadtest: key %s is not on this keypad", k)
}

// running reports whether a driver is waiting for keys: every row driven
// low, which keypad.Matrix.Run first does at the end of its first scan.
// m.mu is held.
func (m *Matrix) running() bool {
	for _, p := range m.rows {
		if !p.driven || p.out != gpio.Low {
			return false
		}
	}
	return true
}

// waitScans waits until cond, checked under the lock after each completed
// scan, holds.
func (m *Matrix) waitScans(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		ok, ch := cond(), m.scanned
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// update recomputes every level from the pressed keys and the rows'
// drive. m.mu is held.
func (m *Matrix) update() {
	// Nodes 0..nr-1 are rows, nr..nr+nc-1 columns; a pressed key joins its
	// row and column.
	var parent [16]int
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			x = parent[x]
		}
		return x
	}
	for s := m.pressed; s != 0; s &= s - 1 {
		i := bits.TrailingZeros64(s)
		a, b := find(i/m.nc), find(m.nr+i%m.nc)
		parent[a] = b
	}
	var low, high [16]bool
	allLow := true
	for r, p := range m.rows {
		switch {
		case p.driven && p.out == gpio.Low:
			low[find(r)] = true
		case p.driven:
			high[find(r)] = true
			allLow = false
		default:
			allLow = false
		}
	}
	// Only an expander drives a column (a quasi-bidirectional pin written
	// low, or a pin set as an output).
	for c, p := range m.cols {
		switch {
		case p.driven && p.out == gpio.Low:
			low[find(m.nr+c)] = true
		case p.driven:
			high[find(m.nr+c)] = true
		}
	}
	shorted := false
	for i := range low {
		shorted = shorted || (low[i] && high[i])
	}
	if shorted && !m.shorted {
		m.shorts++
	}
	m.shorted = shorted
	for r, p := range m.rows {
		switch {
		case p.driven:
			p.set(p.out)
		case low[find(r)]:
			p.set(gpio.Low)
		default:
			p.set(gpio.High)
		}
	}
	for c, p := range m.cols {
		switch {
		case p.driven:
			p.set(p.out)
		case low[find(m.nr+c)]:
			p.set(gpio.Low)
		default:
			p.set(gpio.High)
		}
	}
	if allLow && m.inScan {
		for i := range m.keys {
			if m.seenDown&(1<<i) != 0 {
				m.down[i]++
			}
			if m.seenUp&(1<<i) != 0 {
				m.up[i]++
			}
		}
		m.scans++
		m.inScan, m.seenDown, m.seenUp = false, 0, 0
		close(m.scanned)
		m.scanned = make(chan struct{})
	}
	for _, f := range m.changed {
		f()
	}
}

// observe records what a read of a column tells the driver while exactly
// one row is driven low. m.mu is held.
func (m *Matrix) observe(p *Pin) {
	if p.role != roleCol {
		return
	}
	row, n := 0, 0
	for r, rp := range m.rows {
		if rp.driven && rp.out == gpio.Low {
			row = r
			n++
		}
	}
	if n != 1 {
		return
	}
	m.inScan = true
	bit := uint64(1) << (row*m.nc + (p.num - m.nr))
	switch {
	case p.level == gpio.High:
		m.seenUp |= bit
	case m.pressed&bit != 0:
		m.seenDown |= bit
	}
}
