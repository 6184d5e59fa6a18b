package door

import (
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// LockType says what the lock does without power.
type LockType int

// Lock types.
const (
	// FailSecure is an electric strike: without power it stays locked, and
	// energising the relay unlocks it.
	FailSecure LockType = iota
	// FailSafe is a maglock: without power it releases, so the relay is
	// energised to hold the door locked.
	FailSafe
)

// String returns "fail-secure" or "fail-safe".
func (l LockType) String() string {
	switch l {
	case FailSecure:
		return "fail-secure"
	case FailSafe:
		return "fail-safe"
	}
	return fmt.Sprintf("LockType(%d)", int(l))
}

// RelayOpts describes how the lock relay is wired. The zero value is an
// active-high relay board driving a fail-secure strike.
type RelayOpts struct {
	// ActiveLow is true when the relay board energises its coil on a low pin.
	// Most opto-isolated relay boards sold for the Raspberry Pi are active-low;
	// check that the relay clicks when the pin is pulled to ground.
	ActiveLow bool
	// Lock is the kind of lock behind the relay. Default FailSecure.
	Lock LockType
	// ShutdownUnlocked, for a FailSafe lock only, leaves the door unlocked
	// (relay de-energised) when the service stops, as fire codes sometimes
	// require for maglocks on an escape route. By default a fail-safe lock is
	// held locked on shutdown. A fail-secure strike is always locked on
	// shutdown; setting this with FailSecure is an error.
	ShutdownUnlocked bool
	// OnChange, if set, is called after every change of the relay, with
	// unlocked true when the door was released. It runs on the caller's
	// goroutine (the controller's loop) and must return quickly.
	OnChange func(unlocked bool)
}

// Relay drives the lock relay on one GPIO output. It is only ever released by
// the Controller, for a bounded unlock window; nothing outside this package
// can open it.
type Relay struct {
	mu       sync.Mutex
	pin      gpio.PinOut
	opts     RelayOpts
	unlocked bool
	halted   bool
}

var _ conn.Resource = (*Relay)(nil)

// NewRelay takes the relay pin and drives it to the locked level before
// anything else; it returns an error if the pin cannot be driven.
func NewRelay(pin gpio.PinOut, opts *RelayOpts) (*Relay, error) {
	if pin == nil {
		return nil, errors.New("door: relay: no pin")
	}
	r := &Relay{pin: pin}
	if opts != nil {
		r.opts = *opts
	}
	// Lock first, then judge the options: whatever else is wrong, the door
	// must not be left open by a failed start.
	lockErr := pin.Out(r.level(false))
	switch r.opts.Lock {
	case FailSecure:
		if r.opts.ShutdownUnlocked {
			return nil, errors.New("door: relay: ShutdownUnlocked needs a fail-safe lock; a fail-secure strike always locks without power")
		}
	case FailSafe:
	default:
		return nil, fmt.Errorf("door: relay: unknown lock type %d", int(r.opts.Lock))
	}
	if lockErr != nil {
		return nil, fmt.Errorf("door: relay %s: lock: %w", pin, lockErr)
	}
	return r, nil
}

// level returns the pin level that puts the lock in the wanted state.
func (r *Relay) level(unlocked bool) gpio.Level {
	energised := unlocked
	if r.opts.Lock == FailSafe {
		energised = !unlocked
	}
	return gpio.Level(energised != r.opts.ActiveLow)
}

// set locks or unlocks. After Halt it refuses to unlock.
func (r *Relay) set(unlocked bool) error {
	changed, err := r.drive(unlocked)
	if err != nil {
		return err
	}
	if changed && r.opts.OnChange != nil {
		r.opts.OnChange(unlocked)
	}
	return nil
}

// drive sets the pin under the lock (released even if the pin driver
// panics, so that Halt can still run) and says whether the state changed.
func (r *Relay) drive(unlocked bool) (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if unlocked && r.halted {
		return false, fmt.Errorf("door: relay %s: halted", r.pin)
	}
	if err := r.pin.Out(r.level(unlocked)); err != nil {
		// Whatever failed, try to leave the lock locked.
		_ = r.pin.Out(r.level(false))
		r.unlocked = false
		return false, fmt.Errorf("door: relay %s: %w", r.pin, err)
	}
	changed = r.unlocked != unlocked
	r.unlocked = unlocked
	return changed, nil
}

// Unlocked reports whether the relay is currently releasing the door.
func (r *Relay) Unlocked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unlocked
}

// Halt puts the relay in its shutdown state and keeps it there: locked for a
// fail-secure strike; for a fail-safe maglock, locked unless ShutdownUnlocked.
// It is safe to call more than once and from any goroutine.
func (r *Relay) Halt() error {
	unlocked := r.opts.Lock == FailSafe && r.opts.ShutdownUnlocked
	changed, err := func() (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.halted = true
		if err := r.pin.Out(r.level(unlocked)); err != nil {
			return false, err
		}
		changed := r.unlocked != unlocked
		r.unlocked = unlocked
		return changed, nil
	}()
	if err != nil {
		return fmt.Errorf("door: relay %s: halt: %w", r.pin, err)
	}
	if changed && r.opts.OnChange != nil {
		r.opts.OnChange(unlocked)
	}
	return nil
}

// String implements conn.Resource.
func (r *Relay) String() string {
	return fmt.Sprintf("relay(%s, %s)", r.pin, r.opts.Lock)
}
