package keypad

import (
	"context"
	"errors"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// edgeWait bounds every WaitForEdge call: a pin driver may not be able to
// interrupt a wait, so waiting goroutines wake this often to see whether
// they should stop. It is also the longest Run takes to return after its
// context ends or Halt is called.
const edgeWait = 200 * time.Millisecond

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

// watch calls fn for each edge p reports until ctx ends. Waits are bounded
// by edgeWait, so watch returns at most that long after ctx ends.
func watch(ctx context.Context, p gpio.PinIn, fn func()) {
	for ctx.Err() == nil {
		if p.WaitForEdge(edgeWait) {
			fn()
		}
	}
}
