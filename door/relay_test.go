package door

import (
	"errors"
	"slices"
	"testing"

	"periph.io/x/conn/v3/gpio"
)

func TestRelayLevels(t *testing.T) {
	H, L := gpio.High, gpio.Low
	tests := []struct {
		name                     string
		opts                     RelayOpts
		locked, unlocked, halted gpio.Level
	}{
		// Strike on an active-high board: energise (high) to unlock.
		{"fail-secure active-high", RelayOpts{Lock: FailSecure}, L, H, L},
		// Strike on an active-low board: energise (low) to unlock.
		{"fail-secure active-low", RelayOpts{Lock: FailSecure, ActiveLow: true}, H, L, H},
		// Maglock: energised to hold, de-energised to release.
		{"fail-safe active-high", RelayOpts{Lock: FailSafe}, H, L, H},
		{"fail-safe active-low", RelayOpts{Lock: FailSafe, ActiveLow: true}, L, H, L},
		// Maglock released at shutdown (fire code).
		{"fail-safe active-low, unlocked at shutdown", RelayOpts{Lock: FailSafe, ActiveLow: true, ShutdownUnlocked: true}, L, H, H},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pin := newOutPin("GPIO17")
			r, err := NewRelay(pin, &tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			// The constructor's first write is the locked level.
			if got := pin.outs(); len(got) != 1 || got[0] != tc.locked {
				t.Fatalf("writes after NewRelay %v, want [%v]", got, tc.locked)
			}
			if err := r.set(true); err != nil {
				t.Fatal(err)
			}
			if pin.level() != tc.unlocked || !r.Unlocked() {
				t.Fatalf("unlocked level %v, want %v", pin.level(), tc.unlocked)
			}
			if err := r.set(false); err != nil {
				t.Fatal(err)
			}
			if pin.level() != tc.locked || r.Unlocked() {
				t.Fatalf("locked level %v, want %v", pin.level(), tc.locked)
			}
			if err := r.set(true); err != nil {
				t.Fatal(err)
			}
			if err := r.Halt(); err != nil {
				t.Fatal(err)
			}
			if pin.level() != tc.halted {
				t.Fatalf("halted level %v, want %v", pin.level(), tc.halted)
			}
			// After Halt the relay never releases again.
			if err := r.set(true); err == nil || pin.level() != tc.halted {
				t.Fatalf("unlock after Halt: err %v, level %v", err, pin.level())
			}
		})
	}
}

func TestRelayErrors(t *testing.T) {
	if _, err := NewRelay(nil, nil); err == nil {
		t.Error("nil pin accepted")
	}
	pin := newOutPin("GPIO17")
	if _, err := NewRelay(pin, &RelayOpts{Lock: FailSecure, ShutdownUnlocked: true}); err == nil {
		t.Error("fail-secure with ShutdownUnlocked accepted")
	}
	if got := pin.outs(); len(got) != 1 || got[0] != gpio.Low {
		t.Errorf("a refused relay must still have been locked first: writes %v", got)
	}
	if _, err := NewRelay(newOutPin("x"), &RelayOpts{Lock: 7}); err == nil {
		t.Error("unknown lock type accepted")
	}
	bad := newOutPin("GPIO17")
	bad.failOut(errors.New("EBUSY"))
	if _, err := NewRelay(bad, nil); err == nil {
		t.Error("a pin that cannot be driven accepted")
	}
}

func TestRelayFaultLocks(t *testing.T) {
	pin := newOutPin("GPIO17")
	r, err := NewRelay(pin, &RelayOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	pin.failOut(errors.New("EIO"))
	if err := r.set(true); err == nil {
		t.Fatal("failed write reported no error")
	}
	if r.Unlocked() {
		t.Error("relay reports unlocked after a failed write")
	}
	if err := r.Halt(); err == nil {
		t.Error("failed halt reported no error")
	}
}

func TestRelayOnChange(t *testing.T) {
	var changes []bool
	r, err := NewRelay(newOutPin("GPIO17"), &RelayOpts{OnChange: func(u bool) { changes = append(changes, u) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []bool{true, true, false, false, true} {
		if err := r.set(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Halt(); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, true, false}; !slices.Equal(changes, want) {
		t.Errorf("changes %v, want %v", changes, want)
	}
	if s := r.String(); s != "relay(GPIO17(0), fail-secure)" {
		t.Errorf("String %q", s)
	}
}

// panicPin panics on its first Out, as a broken pin driver might.
type panicPin struct {
	*outPin
	armed bool
}

func (p *panicPin) Out(l gpio.Level) error {
	if p.armed {
		p.armed = false
		panic("pin driver fault")
	}
	return p.outPin.Out(l)
}

// A pin driver that panics while the door is being released leaves the
// relay usable: Halt still locks it.
func TestRelayHaltAfterPanickingDriver(t *testing.T) {
	p := &panicPin{outPin: newOutPin("GPIO17")}
	r, err := NewRelay(p, &RelayOpts{ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	p.armed = true
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_ = r.set(true)
	}()
	if err := r.Halt(); err != nil {
		t.Fatal(err)
	}
	if p.level() != gpio.High || r.Unlocked() {
		t.Fatalf("pin %v unlocked %t after Halt; want locked (high)", p.level(), r.Unlocked())
	}
}
