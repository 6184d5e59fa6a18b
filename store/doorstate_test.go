package store

import (
	"errors"
	"testing"
)

func TestDoorState(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	mustDo(t, s.SetLockdown("front", true))
	mustDo(t, s.PutState("unlock-pulse", []byte("front 2026-03-02T09:30:00Z")))
	s = reopen(t, s, opts)
	if on, err := s.Lockdown("front"); err != nil || !on {
		t.Errorf("lockdown after restart: %v, %v", on, err)
	}
	if on, err := s.Lockdown("lab"); err != nil || on {
		t.Errorf("lockdown of another door: %v, %v", on, err)
	}
	v, err := s.State("unlock-pulse")
	if err != nil || string(v) != "front 2026-03-02T09:30:00Z" {
		t.Errorf("state after restart: %q, %v", v, err)
	}
	v[0] = 'X' // a copy: the store is not affected
	if v2, _ := s.State("unlock-pulse"); v2[0] != 'f' {
		t.Error("State returned memory of the store")
	}
	mustDo(t, s.DeleteState("unlock-pulse"))
	if _, err := s.State("unlock-pulse"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted state: %v", err)
	}
	mustDo(t, s.SetLockdown("front", false))
	if on, _ := s.Lockdown("front"); on {
		t.Error("lockdown still on")
	}
	if err := s.PutState("", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty key: %v", err)
	}
	if err := s.PutState("big", make([]byte, maxStateValue+1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("oversized value: %v", err)
	}
	if err := s.SetLockdown("", true); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty door: %v", err)
	}
	mustDo(t, s.PutState("empty", []byte{}))
	if v, err := s.State("empty"); err != nil || len(v) != 0 {
		t.Errorf("empty value: %q, %v", v, err)
	}
}
