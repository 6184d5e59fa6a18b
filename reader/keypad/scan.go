package keypad

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"
)

// Key maps of the common membrane keypads, rows top to bottom separated by
// '/', each row's keys left to right. Pass one, or a map of your own in the
// same form, in MatrixOpts.Layout.
const (
	// Layout3x4 is the 12-key telephone keypad: 4 rows, 3 columns.
	Layout3x4 = "123/456/789/*0#"
	// Layout4x4 is the 16-key keypad: 4 rows, 4 columns, with the function
	// keys KeyA–KeyD in the fourth column.
	Layout4x4 = "123A/456B/789C/*0#D"
)

// maxLines is the largest number of rows, and of columns, a Matrix drives:
// a scan of up to 8×8 keys fits in a uint64.
const maxLines = 8

// layout is a parsed key map. Key i sits at row i/cols, column i%cols; a
// scan holds bit i set when that key reads pressed.
type layout struct {
	rows, cols int
	keys       []Key
}

// CheckLayout reports whether s is a valid MatrixOpts.Layout for a keypad
// of rows×cols keys, and says what is wrong when it is not.
func CheckLayout(s string, rows, cols int) error {
	_, err := parseLayout(s, rows, cols)
	return err
}

// parseLayout parses a key map in the form of Layout3x4 for a matrix of
// rows×cols keys.
func parseLayout(s string, rows, cols int) (layout, error) {
	lines := strings.Split(s, "/")
	if len(lines) != rows {
		return layout{}, fmt.Errorf("layout %q has %d rows, the keypad has %d row pins", s, len(lines), rows)
	}
	l := layout{rows: rows, cols: cols, keys: make([]Key, 0, rows*cols)}
	seen := map[Key]bool{}
	for r, line := range lines {
		if len(line) != cols {
			return layout{}, fmt.Errorf("layout %q: row %d has %d keys, the keypad has %d column pins", s, r+1, len(line), cols)
		}
		for i := 0; i < len(line); i++ {
			k := Key(line[i])
			if !k.valid() {
				return layout{}, fmt.Errorf("layout %q: %q is not a key (want 0-9, *, #, A-D)", s, line[i])
			}
			if seen[k] {
				return layout{}, fmt.Errorf("layout %q: key %s appears twice", s, k)
			}
			seen[k] = true
			l.keys = append(l.keys, k)
		}
	}
	return l, nil
}

// mask has one bit set for each key of l.
func (l layout) mask() uint64 {
	if len(l.keys) == 64 {
		return ^uint64(0)
	}
	return 1<<len(l.keys) - 1
}

// columns returns the columns that read low with every row driven low when
// the keys of scan s are pressed: one bit per column.
func (l layout) columns(s uint64) uint64 {
	var p uint64
	for s != 0 {
		i := bits.TrailingZeros64(s)
		s &^= 1 << i
		p |= 1 << (i % l.cols)
	}
	return p
}

var (
	errNoKey     = errors.New("no key pressed")
	errAmbiguous = errors.New("more than one key pressed")
	errScan      = errors.New("scan has keys outside the layout")
)

// key decodes a scan: the key when exactly one key reads pressed. Two keys
// or more are ambiguous: on a keypad without diodes three held keys make a
// fourth read pressed, so no key of such a scan can be trusted.
func (l layout) key(s uint64) (Key, error) {
	switch {
	case s&^l.mask() != 0:
		return 0, errScan
	case s == 0:
		return 0, errNoKey
	case s&(s-1) != 0:
		return 0, errAmbiguous
	}
	return l.keys[bits.TrailingZeros64(s)], nil
}

// debouncer turns timestamped scans into key presses. It is pure: it never
// reads a pin or a clock.
//
// A scan result becomes the stable state once two scans at least wait apart,
// and every scan between them, saw it. A key is delivered when the stable
// state goes from no key to exactly that one key: a key held for any time is
// one press, chatter shorter than wait is no press, and a key pressed while
// another is held is never delivered, nor is the one left held after such
// an ambiguous state (release every key to type again).
type debouncer struct {
	l      layout
	wait   time.Duration
	stable uint64    // last confirmed scan
	cand   uint64    // last scan seen
	since  time.Time // when cand was first seen
	primed bool      // false until the first scan
}

// update feeds scan s taken at time t. It returns the key to deliver, if
// any. A malformed scan (keys outside the layout) is an error and leaves the
// state as it was.
func (d *debouncer) update(s uint64, t time.Time) (Key, bool, error) {
	if s&^d.l.mask() != 0 {
		return 0, false, fmt.Errorf("scan %#x: %w", s, errScan)
	}
	if !d.primed {
		// Whatever is held when the keypad starts is where it stands, not a
		// press: a key stuck at boot types nothing.
		d.primed = true
		d.stable, d.cand, d.since = s, s, t
		return 0, false, nil
	}
	if s != d.cand {
		d.cand, d.since = s, t
		return 0, false, nil
	}
	if s == d.stable || t.Sub(d.since) < d.wait {
		return 0, false, nil
	}
	prev := d.stable
	d.stable = s
	if prev != 0 {
		return 0, false, nil
	}
	k, err := d.l.key(s)
	if err != nil {
		return 0, false, nil
	}
	return k, true, nil
}

// due reports whether a scan is needed to confirm a change, and the time at
// which that scan can confirm it.
func (d *debouncer) due() (time.Time, bool) {
	return d.since.Add(d.wait), d.primed && d.cand != d.stable
}

// expected returns the columns that should read low with every row driven
// low, given the last scan.
func (d *debouncer) expected() uint64 {
	return d.l.columns(d.cand)
}
