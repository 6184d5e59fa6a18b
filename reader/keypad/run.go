package keypad

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// edgeWait bounds every WaitForEdge call. When Run stops it halts its
// input pins, which ends a wait in progress on drivers that support it (the
// GPIO character device, keypadtest); on others, the waiting goroutines see
// that they should stop within edgeWait.
const edgeWait = time.Second

var errHalted = errors.New("halted")

// runner lets one Run at a time own a device, and lets Halt stop it.
type runner struct {
	mu     sync.Mutex
	cancel context.CancelCauseFunc // of the Run in progress, nil if none
	done   chan struct{}           // closed when that Run returns
}

// start marks a Run in progress and returns its context; end must be
// called when the Run returns.
func (r *runner) start(ctx context.Context) (context.Context, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return nil, nil, errors.New("Run is already running")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	end := func() {
		cancel(nil)
		r.mu.Lock()
		r.cancel, r.done = nil, nil
		r.mu.Unlock()
		close(done)
	}
	return ctx, end, nil
}

// stop ends the Run in progress, if any, and waits for it to return.
func (r *runner) stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel(errHalted)
	<-done
}

// result is what Run returns once ctx, from start, has ended: nil after
// Halt, else the reason the caller's context ended.
func result(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), errHalted) {
		return nil
	}
	return ctx.Err()
}

// watchers runs one goroutine per pin calling fn(ctx, i) for each edge pin
// i reports, until stop is called, which also ends ctx. stop halts the pins to end their waits and
// returns once every goroutine has; waits are bounded by edgeWait, so it
// returns within that even if a pin cannot interrupt a wait.
func watchers(ctx context.Context, log *slog.Logger, pins []gpio.PinIn, fn func(ctx context.Context, i int)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, p := range pins {
		wg.Go(func() {
			for ctx.Err() == nil {
				if p.WaitForEdge(edgeWait) && ctx.Err() == nil {
					fn(ctx, i)
				}
			}
		})
	}
	return func() {
		cancel()
		for _, p := range pins {
			if err := p.Halt(); err != nil {
				log.Debug("keypad: halting an input pin to end its wait", "pin", p.Name(), "err", err)
			}
		}
		wg.Wait()
	}
}
