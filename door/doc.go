// Package door is the door controller: it turns card reads, key presses,
// the door contact, the exit button, the tamper switch, reader health and
// signed remote commands into decisions, a lock relay, LEDs, a buzzer and
// audit events.
//
// # Hardware
//
// Every device is a periph.io GPIO pin:
//
//   - the lock relay on a gpio.PinOut (NewRelay): active-high or active-low,
//     driving a fail-secure strike (de-energised = locked) or a fail-safe
//     maglock (energised = locked). The relay is set to its locked level
//     before anything else, is only ever released for a bounded window, and
//     Halt puts it in its shutdown state;
//   - the door position switch, the exit button (request to exit) and the
//     tamper switch on gpio.PinIn (NewInput), normally open or normally
//     closed, to ground with a pull-up or to 3.3 V with a pull-down, each
//     debounced in software (50 ms by default);
//   - a green LED, a red LED and a buzzer on gpio.PinOut (NewFeedback), any of
//     them optional.
//
// A typical Raspberry Pi wiring (the one in docs/latchd.example.toml):
// relay board IN on GPIO17 (active-low), door contact between GPIO22 and
// ground (normally closed: closed when the door is shut), exit button
// between GPIO23 and ground (normally open), tamper loop between GPIO27 and
// ground (normally closed), green and red LEDs and the buzzer through
// transistors on GPIO26, GPIO21 and GPIO18.
//
// # Controller
//
// A Controller runs one goroutine (Run) with one select loop. Its decisions
// are made by a pure transition function, next(state, event, now), that
// returns the new state and the actions to carry out (drive the relay, ask
// the allowlist about a card, play a pattern, append an audit event, record
// an unlock in progress). The allowlist's answer comes back as an event, so
// the state machine never blocks on storage; the question runs on its own
// goroutine so that a slow PIN hash never delays a relock or an alarm. Time
// comes from an injected Clock.
//
// The rules:
//
//   - A grant or an exit-button press releases the door for the unlock time
//     (5 s; 15 s for cards flagged for accessibility). Once the door has
//     opened and closed again the relay relocks at once. A grant whose window
//     ends with the door never opened is logged as granted_not_opened.
//   - Only an unlock schedule (free access during configured hours, with a
//     trusted clock) or a signed unlock with an end time keeps the door
//     released for longer; the door may then stand open without door_held.
//   - A first-card unlock schedule (Config.FirstCardGroup) holds the door
//     only once a granted card that lists the group has opened it in the
//     window (schedule_first_card); lockdown ends that until the next such
//     card, and a restart keeps it only from its record in the StateStore.
//   - The door contact opening outside every such window raises door_forced
//     at once; the door standing open past the held time (30 s, with warning
//     beeps 5 s before) raises door_held; both clear with door_closed. The
//     tamper switch raises tamper at once.
//   - In card+PIN mode a card accepted so far waits 10 s for its first digit
//     and 5 s between digits; '*' clears, '#' submits, at most 12 digits are
//     kept. In card-or-PIN mode a code typed without a card is submitted with
//     no UID. Every key gives the same short beep, and every denial but a
//     lockout the same pattern: the reason is only in the log.
//   - Lockdown denies every card without the lockdown override, ends any
//     unlock schedule, signed unlock or grant in progress, and survives
//     restarts through the StateStore. The exit button keeps working.
//   - A card held in the field is decided once; it counts again after it
//     left the field.
//   - Every grant and every denial is exactly one audit event. An allowlist
//     that fails, or does not answer within 30 s, is a denial with reason
//     decision_error. If the journal fails, events are kept in memory in
//     order (up to 10,000) and retried with backoff; the door carries on.
//     A full queue drops its oldest ordinary event (alarms last), and
//     events_lost says how many once the journal writes again.
//   - The journal records the controller's start (started) and orderly
//     stop (stopped).
//   - When the relay releases the door an "unlock in progress" record is
//     written, and cleared when it relocks. If the service finds one at
//     start it logs unlock_interrupted.
//
// The store's *store.Store satisfies Allowlist, Journal and StateStore.
package door
