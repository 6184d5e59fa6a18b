package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/latchdoor/latch/door"
)

// failsafe stops the daemon when one of its parts panics. It logs the panic
// with its stack, puts the relay in its safe state at once, and makes the
// run fail, so that latchd exits non-zero with the door secured instead of
// dying with the relay possibly energised.
type failsafe struct {
	log   *slog.Logger
	relay *door.Relay

	mu      sync.Mutex
	first   error
	tripped chan struct{} // closed by the first panic
}

func newFailsafe(log *slog.Logger, relay *door.Relay) *failsafe {
	return &failsafe{log: log, relay: relay, tripped: make(chan struct{})}
}

// recovered handles the panic v caught in part and returns the error that
// stops the run.
func (f *failsafe) recovered(part string, v any) error {
	f.log.Error("panic: stopping the door", "part", part, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	err := fmt.Errorf("%s: panic: %v", part, v)
	if herr := haltRelay(f.relay, f.log); herr != nil {
		err = errors.Join(err, herr)
	}
	f.mu.Lock()
	if f.first == nil {
		f.first = err
		close(f.tripped)
	}
	f.mu.Unlock()
	return err
}

// goroutine wraps the body of one of the daemon's goroutines: a panic in fn
// becomes its error.
func (f *failsafe) goroutine(part string, fn func() error) func() error {
	return func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = f.recovered(part, v)
			}
		}()
		return fn()
	}
}

// catch, deferred in code of the daemon that another package calls on a
// goroutine of its own (the controller's allowlist questions, the MQTT
// client's handlers), turns a panic there into a failure of the run. errp,
// if not nil, receives the error.
func (f *failsafe) catch(part string, errp *error) {
	if f == nil {
		return
	}
	if v := recover(); v != nil {
		err := f.recovered(part, v)
		if errp != nil {
			*errp = err
		}
	}
}

// call runs fn, turning a panic in it into a failure of the run.
func (f *failsafe) call(part string, fn func()) {
	defer f.catch(part, nil)
	fn()
}

// wait returns the first panic's error once there is one, or nil when ctx
// ends first.
func (f *failsafe) wait(ctx context.Context) error {
	select {
	case <-f.tripped:
		return f.err()
	case <-ctx.Done():
		return nil
	}
}

// err returns the first panic's error, or nil.
func (f *failsafe) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}
