package keypad

import (
	"errors"
	"math/bits"
	"strings"
	"testing"
	"time"
)

func mustLayout(t testing.TB, s string, rows, cols int) layout {
	t.Helper()
	l, err := parseLayout(s, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseLayout(t *testing.T) {
	for _, tc := range []struct {
		s          string
		rows, cols int
		err        string // substring; empty for success
	}{
		{Layout3x4, 4, 3, ""},
		{Layout4x4, 4, 4, ""},
		{"12/34", 2, 2, ""},
		{Layout3x4, 4, 4, "row 1 has 3 keys"},
		{Layout3x4, 3, 3, "has 4 rows"},
		{"123/456/789/*0x", 4, 3, `'x' is not a key`},
		{"123/456/789/*1#", 4, 3, "key 1 appears twice"},
		{"", 1, 1, "row 1 has 0 keys"},
		{"12//34", 3, 2, "row 2 has 0 keys"},
	} {
		l, err := parseLayout(tc.s, tc.rows, tc.cols)
		if tc.err == "" {
			if err != nil {
				t.Errorf("parseLayout(%q, %d, %d): %v", tc.s, tc.rows, tc.cols, err)
			} else if got := string(l.keys); got != strings.ReplaceAll(tc.s, "/", "") {
				t.Errorf("parseLayout(%q) keys = %q", tc.s, got)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseLayout(%q, %d, %d) = %v, want error containing %q", tc.s, tc.rows, tc.cols, err, tc.err)
		}
	}
}

func TestLayoutKey(t *testing.T) {
	l := mustLayout(t, Layout3x4, 4, 3)
	// Each single key decodes to its label.
	for i, want := range []byte("123456789*0#") {
		k, err := l.key(1 << i)
		if err != nil || k != Key(want) {
			t.Errorf("key(1<<%d) = %v, %v; want %c", i, k, err, want)
		}
	}
	for _, tc := range []struct {
		s   uint64
		err error
	}{
		{0, errNoKey},
		{1<<0 | 1<<4, errAmbiguous},                 // '1' and '5'
		{1<<0 | 1<<1 | 1<<3 | 1<<4, errAmbiguous},   // '1','2','4' held and ghost '5'
		{1 << 12, errScan},                          // beyond 12 keys
		{1<<0 | 1<<63, errScan},                     // a key and garbage
		{^uint64(0), errScan},                       // everything
		{1<<11 | 1<<10 | 1<<9 | 1<<8, errAmbiguous}, // a whole row
	} {
		if k, err := l.key(tc.s); !errors.Is(err, tc.err) {
			t.Errorf("key(%#x) = %v, %v; want %v", tc.s, k, err, tc.err)
		}
	}
	// A full 8×8 keypad uses all 64 bits.
	l64 := layout{rows: 8, cols: 8, keys: make([]Key, 64)}
	if l64.mask() != ^uint64(0) {
		t.Errorf("8×8 mask = %#x", l64.mask())
	}
}

func TestLayoutColumns(t *testing.T) {
	l := mustLayout(t, Layout4x4, 4, 4)
	for _, tc := range []struct{ s, want uint64 }{
		{0, 0},
		{1 << 0, 1 << 0},              // '1': column 0
		{1 << 5, 1 << 1},              // '5': column 1
		{1<<3 | 1<<15, 1 << 3},        // 'A' and 'D': column 3
		{1<<0 | 1<<6 | 1<<11, 0b1101}, // '1','6','B'
	} {
		if got := l.columns(tc.s); got != tc.want {
			t.Errorf("columns(%#x) = %#b, want %#b", tc.s, got, tc.want)
		}
	}
}

// step is one scan fed to a debouncer, at a time in milliseconds.
type step struct {
	ms   float64
	keys string // keys read pressed, by label
}

func scanOf(t testing.TB, l layout, keys string) uint64 {
	var s uint64
	for i := 0; i < len(keys); i++ {
		j := strings.IndexByte(string(l.keys), keys[i])
		if j < 0 {
			t.Fatalf("no key %q", keys[i])
		}
		s |= 1 << j
	}
	return s
}

func TestDebouncer(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	l := mustLayout(t, Layout4x4, 4, 4)
	for _, tc := range []struct {
		name  string
		steps []step
		want  string
	}{
		{"clean press", []step{{0, ""}, {100, "5"}, {120, "5"}}, "5"},
		{"not yet stable", []step{{0, ""}, {100, "5"}, {119.9, "5"}}, ""},
		{"release and press again", []step{
			{0, ""}, {100, "5"}, {120, "5"}, {200, ""}, {220, ""}, {300, "5"}, {320, "5"},
		}, "55"},
		{"chatter on press is one key", []step{
			{0, ""}, {100, "1"}, {102, ""}, {103, "1"}, {104, ""}, {106, "1"}, {126, "1"},
		}, "1"},
		{"chatter on release is no key", []step{
			{0, ""}, {100, "1"}, {120, "1"}, {200, ""}, {202, "1"}, {203, ""}, {205, "1"}, {206, ""}, {226, ""},
		}, "1"},
		{"chatter shorter than debounce is nothing", []step{
			{0, ""}, {100, "1"}, {105, ""}, {110, "1"}, {115, ""}, {135, ""},
		}, ""},
		{"held ten seconds is one key", func() []step {
			s := []step{{0, ""}, {100, "9"}}
			for ms := 120.0; ms <= 10100; ms += 500 {
				s = append(s, step{ms, "9"})
			}
			return append(s, step{10100, ""}, step{10120, ""})
		}(), "9"},
		{"two keys at once", []step{
			{0, ""}, {100, "12"}, {120, "12"}, {200, ""}, {220, ""},
		}, ""},
		{"second key while one held, then first released", []step{
			{0, ""}, {100, "1"}, {120, "1"}, {200, "15"}, {220, "15"}, {300, "5"}, {320, "5"}, {400, ""}, {420, ""}, {500, "3"}, {520, "3"},
		}, "13"},
		{"second key before first confirmed", []step{
			{0, ""}, {100, "1"}, {110, "15"}, {130, "15"}, {140, "5"}, {160, "5"},
		}, ""},
		{"ghost of three held keys", []step{
			{0, ""}, {100, "1245"}, {120, "1245"},
		}, ""},
		{"key held at start types nothing", []step{
			{0, "7"}, {20, "7"}, {1000, "7"}, {1100, ""}, {1120, ""}, {1200, "7"}, {1220, "7"},
		}, "7"},
		{"time going backwards confirms nothing", []step{
			{0, ""}, {100, "5"}, {50, "5"}, {99, "5"},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := debouncer{l: l, wait: 20 * time.Millisecond}
			var got []byte
			for _, s := range tc.steps {
				k, ok, err := d.update(scanOf(t, l, s.keys), at(s.ms))
				if err != nil {
					t.Fatalf("update(%q @%vms): %v", s.keys, s.ms, err)
				}
				if ok {
					got = append(got, byte(k))
				}
			}
			if string(got) != tc.want {
				t.Errorf("keys = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDebouncerDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := mustLayout(t, Layout3x4, 4, 3)
	d := debouncer{l: l, wait: 20 * time.Millisecond}
	if _, ok := d.due(); ok {
		t.Error("due before the first scan")
	}
	mustUpdate := func(s uint64, t1 time.Time) {
		t.Helper()
		if _, _, err := d.update(s, t1); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(0, t0)
	if _, ok := d.due(); ok {
		t.Error("due with nothing changing")
	}
	mustUpdate(1, t0.Add(time.Second))
	if at, ok := d.due(); !ok || !at.Equal(t0.Add(time.Second+20*time.Millisecond)) {
		t.Errorf("due() = %v, %v; want %v", at, ok, t0.Add(time.Second+20*time.Millisecond))
	}
	if got := d.expected(); got != 1 {
		t.Errorf("expected() = %#b, want column 0", got)
	}
	mustUpdate(1, t0.Add(time.Second+20*time.Millisecond))
	if _, ok := d.due(); ok {
		t.Error("due after confirming")
	}
}

func TestDebouncerMalformedScan(t *testing.T) {
	l := mustLayout(t, Layout3x4, 4, 3)
	d := debouncer{l: l, wait: 20 * time.Millisecond}
	t0 := time.Unix(0, 0)
	if _, _, err := d.update(0, t0); err != nil {
		t.Fatal(err)
	}
	// Bit 12 is no key of a 3×4 keypad: refused, state kept.
	for _, ms := range []int{10, 40} {
		if k, ok, err := d.update(1<<12, t0.Add(time.Duration(ms)*time.Millisecond)); !errors.Is(err, errScan) || ok {
			t.Fatalf("update(1<<12) = %v, %v, %v; want errScan", k, ok, err)
		}
	}
	if _, ok := d.due(); ok {
		t.Error("malformed scans left a change pending")
	}
}

func TestKey(t *testing.T) {
	for k := range 256 {
		k := Key(k)
		pin := (k >= '0' && k <= '9') || k == '*' || k == '#'
		if k.IsPIN() != pin {
			t.Errorf("Key(%#x).IsPIN() = %v", byte(k), k.IsPIN())
		}
		s := k.String()
		if k.valid() != (len(s) == 1) {
			t.Errorf("Key(%#x).String() = %q", byte(k), s)
		}
	}
	if s := KeyA.String(); s != "A" {
		t.Errorf("KeyA = %q", s)
	}
	if s := Key(0).String(); s != "Key(0x00)" {
		t.Errorf("Key(0) = %q", s)
	}
}

// FuzzScanKey checks that a scan decodes to a key only when exactly one
// key of the layout reads pressed, and then to that key.
func FuzzScanKey(f *testing.F) {
	for _, s := range []uint64{0, 1, 1 << 11, 1 << 12, 0b11, 1 << 63, ^uint64(0), 0b100000010001} {
		f.Add(s, false)
		f.Add(s, true)
	}
	l3 := mustLayout(f, Layout3x4, 4, 3)
	l4 := mustLayout(f, Layout4x4, 4, 4)
	f.Fuzz(func(t *testing.T, s uint64, big bool) {
		l := l3
		if big {
			l = l4
		}
		k, err := l.key(s)
		if err != nil {
			return
		}
		if bits.OnesCount64(s) != 1 || s&^l.mask() != 0 {
			t.Fatalf("key(%#x) = %v from a scan that is not one key", s, k)
		}
		if k != l.keys[bits.TrailingZeros64(s)] {
			t.Fatalf("key(%#x) = %v, want %v", s, k, l.keys[bits.TrailingZeros64(s)])
		}
	})
}

// FuzzDebounce feeds arbitrary timestamped scans to the debouncer. Each
// step is 3 bytes: a 16-bit scan of a 3×4 keypad (bits 12–15 are no key)
// and the milliseconds since the previous step. A delivered key must be
// the only key of a scan that read the same for the whole debounce time,
// after the keypad was seen empty for the debounce time (or at start).
func FuzzDebounce(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 5, 1, 0, 20})
	f.Add([]byte{0, 0, 0, 1, 0, 5, 0, 0, 2, 1, 0, 1, 1, 0, 25, 0, 0, 30, 0, 0, 30})
	f.Add([]byte{0, 0, 0, 0x11, 0, 5, 0x11, 0, 25, 0x10, 0, 30, 0x10, 0, 30})
	f.Add([]byte{0, 0x10, 0, 0, 0x10, 30, 1, 0, 1, 1, 0, 40})
	f.Add([]byte{1, 0, 0, 1, 0, 250, 0, 0, 250, 0, 0, 250, 2, 0, 1, 2, 0, 21})
	l := mustLayout(f, Layout3x4, 4, 3)
	const wait = 20 * time.Millisecond
	f.Fuzz(func(t *testing.T, data []byte) {
		d := debouncer{l: l, wait: wait}
		now := time.Unix(1e9, 0)
		var (
			run      uint64    // value of the current run of equal scans
			runStart time.Time // first scan of the run
			inRun    bool
			primed   bool
			idle     bool // empty for the debounce time since the last key (or at start)
		)
		for i := 0; i+3 <= len(data); i += 3 {
			s := uint64(data[i]) | uint64(data[i+1])<<8
			now = now.Add(time.Duration(data[i+2]) * time.Millisecond)
			k, ok, err := d.update(s, now)
			if s&^l.mask() != 0 {
				if err == nil || ok {
					t.Fatalf("step %d: malformed scan %#x accepted", i/3, s)
				}
				continue
			}
			if err != nil {
				t.Fatalf("step %d: update(%#x): %v", i/3, s, err)
			}
			if !inRun || s != run {
				run, runStart, inRun = s, now, true
			}
			if !primed {
				primed, idle = true, s == 0 // the first scan is where the keypad stands
			}
			if run == 0 && now.Sub(runStart) >= wait {
				idle = true
			}
			if !ok {
				continue
			}
			if bits.OnesCount64(s) != 1 || k != l.keys[bits.TrailingZeros64(s)] {
				t.Fatalf("step %d: key %v from scan %#x", i/3, k, s)
			}
			if now.Sub(runStart) < wait {
				t.Fatalf("step %d: key %v after %v of stable scans", i/3, k, now.Sub(runStart))
			}
			if !idle {
				t.Fatalf("step %d: key %v without the keypad going idle since the last one", i/3, k)
			}
			idle = false
		}
	})
}

func TestCheckLayout(t *testing.T) {
	if err := CheckLayout(Layout4x4, 4, 4); err != nil {
		t.Errorf("4x4: %v", err)
	}
	if err := CheckLayout("123/456/789/*00", 4, 3); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("a key twice: %v", err)
	}
}
