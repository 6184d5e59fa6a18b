package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// simOp is one command typed at the simulator's prompt.
type simOp int

const (
	opTap simOp = iota + 1
	opRemove
	opKey
	opOpen
	opClose
	opREX
	opTamper
	opStatus
	opHelp
	opQuit
	opUnlock
	opLockdown
	opRevoke
	opReinstate
)

// simCmd is a parsed simulator command.
type simCmd struct {
	op   simOp
	uid  []byte        // opTap
	keys string        // opKey
	dur  time.Duration // opUnlock
	on   bool          // opLockdown
}

// maxSimLine bounds one command line.
const maxSimLine = 256

const simHelp = `commands:
  tap UID     a card enters the field and stays (UID in hex, any case, ':' allowed)
  remove      the card leaves the field
  key KEYS    press keys in order: 0-9, * clears, # submits (e.g. key 1234#);
              what the door shows and sounds is printed as it happens
  open        the door contact opens
  close       the door contact closes
  rex         press the exit button
  tamper [on|off]
              the tamper switch trips (on, the default), or is restored:
              the tamper alarm clears
  unlock [S]  the site sends a signed unlock for S seconds (default 5)
  lockdown on|off
              the site sends a signed lockdown command
  revoke UID  the site revokes a card (a signed allowlist delta)
  reinstate UID
              the site reinstates a revoked card
              (these four go through the site in this process; a door
              that joined a site is given them at that site)
  status      print the door's state
  help        this text
  quit        stop latchd`

// parseSimCmd parses one line of simulator input. Blank lines and lines
// starting with '#' parse to a zero simCmd and no error.
func parseSimCmd(line string) (simCmd, error) {
	if len(line) > maxSimLine {
		return simCmd{}, fmt.Errorf("line is %d bytes, at most %d", len(line), maxSimLine)
	}
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return simCmd{}, nil
	}
	name, args := strings.ToLower(fields[0]), fields[1:]
	noArgs := func(op simOp) (simCmd, error) {
		if len(args) != 0 {
			return simCmd{}, fmt.Errorf("%s takes no arguments", name)
		}
		return simCmd{op: op}, nil
	}
	switch name {
	case "tap":
		if len(args) != 1 {
			return simCmd{}, errors.New("tap needs one UID, e.g. tap 04A1B2C3D4E5F6")
		}
		uid, err := parseUID(args[0])
		if err != nil {
			return simCmd{}, fmt.Errorf("tap: %w", err)
		}
		return simCmd{op: opTap, uid: uid}, nil
	case "key", "keys":
		if len(args) != 1 {
			return simCmd{}, errors.New("key needs the keys to press, e.g. key 1234#")
		}
		for _, r := range args[0] {
			if !(r >= '0' && r <= '9') && r != '*' && r != '#' {
				return simCmd{}, fmt.Errorf("key: %q is not a key (0-9, *, #)", r)
			}
		}
		if len(args[0]) > 32 {
			return simCmd{}, errors.New("key: at most 32 keys at once")
		}
		return simCmd{op: opKey, keys: args[0]}, nil
	case "revoke", "reinstate":
		if len(args) != 1 {
			return simCmd{}, fmt.Errorf("%s needs one UID", name)
		}
		uid, err := parseUID(args[0])
		if err != nil {
			return simCmd{}, fmt.Errorf("%s: %w", name, err)
		}
		op := opRevoke
		if name == "reinstate" {
			op = opReinstate
		}
		return simCmd{op: op, uid: uid}, nil
	case "unlock":
		c := simCmd{op: opUnlock, dur: 5 * time.Second}
		switch len(args) {
		case 0:
		case 1:
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > 60 {
				return simCmd{}, fmt.Errorf("unlock: %q: want whole seconds from 1 to 60", args[0])
			}
			c.dur = time.Duration(n) * time.Second
		default:
			return simCmd{}, errors.New("unlock takes at most one argument, the seconds")
		}
		return c, nil
	case "lockdown":
		if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
			return simCmd{}, errors.New("lockdown needs on or off")
		}
		return simCmd{op: opLockdown, on: args[0] == "on"}, nil
	case "remove":
		return noArgs(opRemove)
	case "open":
		return noArgs(opOpen)
	case "close":
		return noArgs(opClose)
	case "rex":
		return noArgs(opREX)
	case "tamper":
		switch {
		case len(args) == 0:
			return simCmd{op: opTamper, on: true}, nil
		case len(args) == 1 && (args[0] == "on" || args[0] == "off"):
			return simCmd{op: opTamper, on: args[0] == "on"}, nil
		}
		return simCmd{}, errors.New("tamper takes on (the default) or off")
	case "status":
		return noArgs(opStatus)
	case "help", "?":
		return noArgs(opHelp)
	case "quit", "exit":
		return noArgs(opQuit)
	}
	return simCmd{}, fmt.Errorf("unknown command %q (try help)", fields[0])
}

// parseUID accepts a card UID in hex, any case, with or without ':' (or '-'
// or ' ') between bytes. A UID is 4, 7 or 10 bytes (ISO/IEC 14443-3 single,
// double and triple size).
func parseUID(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", "-", "", " ", "").Replace(s)
	if len(clean)%2 != 0 {
		return nil, fmt.Errorf("UID %q: odd number of hex digits", s)
	}
	b, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("UID %q: not hex", s)
	}
	switch len(b) {
	case 4, 7, 10:
		return b, nil
	}
	return nil, fmt.Errorf("UID %q: %d bytes, want 4, 7 or 10", s, len(b))
}
