package displaytest

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3/physic"
)

// maxErrors bounds the errors an emulator keeps.
const maxErrors = 100

// device is what both emulators share: a chip alone at its address on its
// own bus, which can be unplugged, with its traffic and its errors. Its
// mutex guards the emulator's state too.
type device struct {
	chip  string // "hd44780", "ssd1306"
	addr  uint16
	maxHz physic.Frequency
	reset func() // the power-on state; called with mu held

	mu     sync.Mutex
	gone   bool // disconnected
	writes int  // I²C transactions
	bytes  int  // bytes written, not counting address bytes
	errs   []error
}

// String implements i2c.Bus.
func (d *device) String() string { return fmt.Sprintf("displaytest %s at %#02x", d.chip, d.addr) }

// SetSpeed implements i2c.Bus: it refuses a clock faster than the chip's.
func (d *device) SetSpeed(f physic.Frequency) error {
	if f > d.maxHz {
		return fmt.Errorf("displaytest: %s is faster than the %s's %s", f, d.chip, d.maxHz)
	}
	return nil
}

// begin starts a transaction with mu held: ErrNoDevice when nothing
// answers on addr.
func (d *device) begin(addr uint16, w []byte) error {
	if addr != d.addr || d.gone {
		return ErrNoDevice
	}
	d.writes++
	d.bytes += len(w)
	return nil
}

// Disconnect takes the device off the bus: transactions fail with
// ErrNoDevice until Connect.
func (d *device) Disconnect() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gone = true
}

// Connect puts the device back on the bus, powered up afresh.
func (d *device) Connect() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gone = false
	d.reset()
}

// Traffic returns the transactions and the bytes written so far.
func (d *device) Traffic() (transactions, bytes int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes, d.bytes
}

// Errors returns what the chip could not make sense of, oldest first.
func (d *device) Errors() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]error(nil), d.errs...)
}

// errorf records an error, with mu held.
func (d *device) errorf(format string, args ...any) {
	if len(d.errs) < maxErrors {
		d.errs = append(d.errs, fmt.Errorf(d.chip+": "+format, args...))
	}
}
