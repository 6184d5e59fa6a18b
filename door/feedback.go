package door

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// lights is a set of feedback outputs.
type lights uint8

const (
	green lights = 1 << iota
	red
	buzzer
	allLights = green | red | buzzer
)

// step is one span of a pattern with its outputs on.
type step struct {
	d  time.Duration
	on lights
}

// pattern is a sequence of steps. A base pattern loops for as long as the
// door stays in its mode; a one-shot pattern plays once over the base and
// drives only the outputs in its mask.
type pattern struct {
	steps []step
	mask  lights // one-shot only: the outputs it drives
	loop  bool
}

// patternID names one of the door's patterns.
type patternID int

// The door's patterns. Every key press sounds patKey, whatever the door is
// doing, so a keypad never tells digits apart; every denial but a lockout
// shows the same patDenied, so the reason is only in the log.
const (
	// Base patterns: the door's steady state.
	patIdle        patternID = iota // everything off
	patUnlocked                     // green steady
	patLockdown                     // red steady
	patAwaitingPIN                  // green and red blinking together
	patAlarm                        // red and buzzer pulsing
	patFault                        // red blinking, a chirp every 10 s: the controller cannot run

	// One-shot patterns.
	patKey       // one short beep
	patGranted   // green, one beep
	patDenied    // red, three short beeps
	patLockedOut // one long beep, then red flashing
	patPreAlarm  // three short beeps: close the door
)

// looks describes the pattern in words.
func (id patternID) looks() string {
	switch id {
	case patIdle:
		return "LEDs off"
	case patUnlocked:
		return "green steady"
	case patLockdown:
		return "red steady"
	case patAwaitingPIN:
		return "green and red blinking together"
	case patAlarm:
		return "red flashing with the buzzer"
	case patFault:
		return "red blinking, a chirp every 10 s"
	case patKey:
		return "one short beep"
	case patGranted:
		return "green, one beep"
	case patDenied:
		return "red, three short beeps"
	case patLockedOut:
		return "one long beep, then red flashing"
	case patPreAlarm:
		return "three short beeps: close the door"
	}
	return id.String()
}

func (id patternID) String() string {
	switch id {
	case patIdle:
		return "idle"
	case patUnlocked:
		return "unlocked"
	case patLockdown:
		return "lockdown"
	case patAwaitingPIN:
		return "awaiting_pin"
	case patAlarm:
		return "alarm"
	case patFault:
		return "fault"
	case patKey:
		return "key"
	case patGranted:
		return "granted"
	case patDenied:
		return "denied"
	case patLockedOut:
		return "locked_out"
	case patPreAlarm:
		return "pre_alarm"
	}
	return fmt.Sprintf("pattern(%d)", int(id))
}

const ms = time.Millisecond

// pattern returns the steps of id.
func (id patternID) pattern() pattern {
	switch id {
	case patUnlocked:
		return pattern{steps: []step{{time.Hour, green}}, loop: true}
	case patLockdown:
		return pattern{steps: []step{{time.Hour, red}}, loop: true}
	case patAwaitingPIN:
		return pattern{steps: []step{{250 * ms, green | red}, {250 * ms, 0}}, loop: true}
	case patAlarm:
		return pattern{steps: []step{{400 * ms, red | buzzer}, {400 * ms, 0}}, loop: true}
	case patFault:
		steps := []step{{100 * ms, red | buzzer}, {400 * ms, red}, {500 * ms, 0}}
		for range 9 {
			steps = append(steps, step{500 * ms, red}, step{500 * ms, 0})
		}
		return pattern{steps: steps, loop: true}
	case patKey:
		return pattern{steps: []step{{60 * ms, buzzer}}, mask: buzzer}
	case patGranted:
		return pattern{steps: []step{{150 * ms, green | buzzer}, {850 * ms, green}}, mask: allLights}
	case patDenied:
		return pattern{steps: []step{
			{100 * ms, red | buzzer}, {100 * ms, red},
			{100 * ms, red | buzzer}, {100 * ms, red},
			{100 * ms, red | buzzer}, {500 * ms, red},
		}, mask: allLights}
	case patLockedOut:
		return pattern{steps: []step{
			{time.Second, red | buzzer},
			{150 * ms, 0}, {150 * ms, red},
			{150 * ms, 0}, {150 * ms, red},
			{150 * ms, 0}, {150 * ms, red},
		}, mask: allLights}
	case patPreAlarm:
		return pattern{steps: []step{
			{100 * ms, buzzer}, {100 * ms, 0},
			{100 * ms, buzzer}, {100 * ms, 0},
			{100 * ms, buzzer},
		}, mask: buzzer}
	}
	return pattern{steps: []step{{time.Hour, 0}}, loop: true}
}

func (p *pattern) total() time.Duration {
	var t time.Duration
	for _, s := range p.steps {
		t += s.d
	}
	return t
}

// at returns the outputs on after elapsed, how long they stay so, and whether
// the pattern is still playing. A looping pattern of one step never changes
// (left is zero).
func (p *pattern) at(elapsed time.Duration) (on lights, left time.Duration, playing bool) {
	if elapsed < 0 {
		elapsed = 0
	}
	total := p.total()
	if total <= 0 {
		return 0, 0, false
	}
	if p.loop {
		if len(p.steps) == 1 {
			return p.steps[0].on, 0, true
		}
		elapsed %= total
	} else if elapsed >= total {
		return 0, 0, false
	}
	for _, s := range p.steps {
		if elapsed < s.d {
			return s.on, s.d - elapsed, true
		}
		elapsed -= s.d
	}
	return 0, 0, false
}

// FeedbackOpts describes how the LEDs and buzzer are wired.
type FeedbackOpts struct {
	// ActiveLow is true when an output is on at a low pin level (LEDs wired
	// from 3.3 V through a resistor to the pin, or a low-triggered buzzer
	// module). Default: on at a high level.
	ActiveLow bool
	// OnPattern, if set, is told each pattern as it starts: a new steady
	// pattern, or a one-shot one played over it. It is called from the
	// controller's goroutine and must return promptly. latchd's simulator
	// prints what a person at the door would see and hear.
	OnPattern func(Pattern)
}

// Pattern is a feedback pattern as a person at the door perceives it.
type Pattern struct {
	Name    string // "idle", "awaiting_pin", "granted", "denied", …
	Looks   string // the LEDs and buzzer in words: "green, one beep"
	OneShot bool   // it plays once over the steady pattern
}

// Feedback drives the reader's green LED, red LED and buzzer. Any of them may
// be absent. Its patterns are timed by the controller's Clock.
type Feedback struct {
	mu       sync.Mutex
	pins     [3]gpio.PinOut // green, red, buzzer
	opts     FeedbackOpts
	cur      lights
	known    bool
	baseID   patternID
	base     pattern
	baseAt   time.Time
	shot     pattern
	shotOn   bool
	shotAt   time.Time
	halted   bool
	errCount int
}

var _ conn.Resource = (*Feedback)(nil)

// NewFeedback takes the feedback outputs (any may be nil when not fitted) and
// turns them all off.
func NewFeedback(greenLED, redLED, buzz gpio.PinOut, opts *FeedbackOpts) (*Feedback, error) {
	f := &Feedback{pins: [3]gpio.PinOut{greenLED, redLED, buzz}, baseID: patIdle, base: patIdle.pattern()}
	if opts != nil {
		f.opts = *opts
	}
	if err := f.write(0); err != nil {
		return nil, err
	}
	return f, nil
}

// write sets every fitted output to on.
func (f *Feedback) write(on lights) error {
	var errs []error
	for i, p := range f.pins {
		if p == nil {
			continue
		}
		bit := lights(1) << i
		if f.known && (f.cur&bit) == (on&bit) {
			continue
		}
		lvl := gpio.Level((on&bit != 0) != f.opts.ActiveLow)
		if err := p.Out(lvl); err != nil {
			errs = append(errs, fmt.Errorf("door: feedback %s: %w", p, err))
		}
	}
	if len(errs) > 0 {
		f.known = false
		return errors.Join(errs...)
	}
	f.cur, f.known = on, true
	return nil
}

// setBase changes the looping base pattern; the same pattern keeps its phase.
func (f *Feedback) setBase(id patternID, now time.Time) {
	f.mu.Lock()
	changed := f.baseID != id
	if changed {
		f.baseID, f.base, f.baseAt = id, id.pattern(), now
	}
	f.mu.Unlock()
	if changed {
		f.tell(id, false)
	}
}

// tell reports a pattern that starts to OnPattern.
func (f *Feedback) tell(id patternID, oneShot bool) {
	if f.opts.OnPattern != nil {
		f.opts.OnPattern(Pattern{Name: id.String(), Looks: id.looks(), OneShot: oneShot})
	}
}

// play starts a one-shot pattern over the base, replacing any other one.
func (f *Feedback) play(id patternID, now time.Time) {
	f.mu.Lock()
	f.shot, f.shotOn, f.shotAt = id.pattern(), true, now
	f.mu.Unlock()
	f.tell(id, true)
}

// update drives the outputs for now and returns when they next change (zero
// if never). A failing output is reported once per run of failures.
func (f *Feedback) update(now time.Time) (next time.Time, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.halted {
		return time.Time{}, nil
	}
	on, left, _ := f.base.at(now.Sub(f.baseAt))
	if f.shotOn {
		s, sl, playing := f.shot.at(now.Sub(f.shotAt))
		if !playing {
			f.shotOn = false
		} else {
			on = on&^f.shot.mask | s&f.shot.mask
			if left == 0 || sl < left {
				left = sl
			}
		}
	}
	if werr := f.write(on); werr != nil {
		f.errCount++
		if f.errCount == 1 {
			err = werr
		}
	} else {
		f.errCount = 0
	}
	if left > 0 {
		next = now.Add(left)
	}
	return next, err
}

// ShowFault shows that the door cannot run (its database cannot be opened,
// say): the red LED blinks and the buzzer chirps every 10 s until ctx is
// done; then every output is turned off. It is for a daemon that keeps the
// door locked and waits for an installer instead of restarting in a loop;
// it must not be used while a Controller drives f.
func (f *Feedback) ShowFault(ctx context.Context, clock Clock) error {
	f.setBase(patFault, clock.Now())
	t := clock.NewTimer(time.Hour)
	defer t.Stop()
	var first error
	for {
		next, err := f.update(clock.Now())
		if err != nil && first == nil {
			first = err
		}
		t.ResetAt(next)
		select {
		case <-ctx.Done():
			return errors.Join(first, f.Halt())
		case <-t.C():
		}
	}
}

// Halt turns every output off and stops the patterns.
func (f *Feedback) Halt() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.halted = true
	f.known = false
	return f.write(0)
}

// String implements conn.Resource.
func (f *Feedback) String() string {
	var parts []string
	for i, name := range []string{"green", "red", "buzzer"} {
		if f.pins[i] != nil {
			parts = append(parts, name+"="+f.pins[i].String())
		}
	}
	return "feedback(" + strings.Join(parts, ", ") + ")"
}
