package door

import (
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
)

// This file decides what the door's display shows: a pure function of the
// state, like the feedback patterns. The display says only what the person
// at the door may know: every denial but a lockout reads the same, as it
// sounds the same.

// noteTime is how long a message about one credential (granted, denied,
// locked out, present a card first) stays on the display.
const noteTime = 3 * time.Second

// note is a message the display shows for noteTime after something
// happened at the door.
type note int

const (
	noteNone      note = iota
	noteGranted        // a credential was granted
	noteDenied         // a credential was denied, for any reason but a lockout
	noteLockedOut      // too many bad PINs
	noteCardFirst      // a key was pressed with no card waiting for its PIN
	noteCloseDoor      // the door has stood open nearly the held time
)

// noteFor returns the message a one-shot feedback pattern puts on the
// display, or noteNone.
func noteFor(p patternID) note {
	switch p {
	case patGranted:
		return noteGranted
	case patDenied:
		return noteDenied
	case patLockedOut:
		return noteLockedOut
	case patPreAlarm:
		return noteCloseDoor
	}
	return noteNone
}

// screen returns the two lines the display shows in state s.
func (s *state) screen() [2]string {
	switch {
	case s.forced:
		return [2]string{"Door forced", "Alarm raised"}
	case s.held:
		return [2]string{"Door held open", "Please close it"}
	case s.tamper:
		return [2]string{"Tamper alarm", ""}
	case s.pin.active:
		return [2]string{"Enter PIN", maskedPIN(len(s.pin.digits))}
	case s.pending.active && s.pending.pin != nil:
		return [2]string{"Checking PIN", ""}
	}
	switch s.note {
	case noteGranted:
		return [2]string{"Access granted", ""}
	case noteDenied:
		return [2]string{"Access denied", ""}
	case noteLockedOut:
		return [2]string{"Locked out", "Try again later"}
	case noteCardFirst:
		if s.p.mode == store.ModeCardOnly {
			return [2]string{"Present card", ""}
		}
		return [2]string{"Present card", "then enter PIN"}
	case noteCloseDoor:
		return [2]string{"Please close", "the door"}
	}
	var line2 string
	if s.offline {
		line2 = "Offline"
	}
	switch {
	case s.relay:
		return [2]string{"Door unlocked", line2}
	case s.lockdown:
		return [2]string{"Lockdown", "No entry"}
	case s.journalFault && !s.p.openUnrecorded:
		return [2]string{"Out of service", line2}
	case s.p.mode == store.ModeCardOrPIN:
		return [2]string{"Card or PIN", line2}
	}
	return [2]string{"Present card", line2}
}

// maskedPIN shows n typed digits as stars, the last DisplayWidth of them.
func maskedPIN(n int) string {
	return strings.Repeat("*", min(n, DisplayWidth))
}

// stoppedScreen is what the display shows once the controller has stopped:
// the door is locked and takes no credential.
var stoppedScreen = [2]string{"Out of service", ""}
