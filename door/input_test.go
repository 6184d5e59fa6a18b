package door

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

func TestDebouncer(t *testing.T) {
	type sample struct {
		at time.Duration
		v  bool
	}
	type report struct {
		at time.Duration
		v  bool
	}
	tests := []struct {
		name    string
		samples []sample
		want    []report
	}{
		{"first level counts once stable",
			[]sample{{0, false}, {49 * ms, false}, {50 * ms, false}, {time.Second, false}},
			[]report{{50 * ms, false}}},
		{"glitch shorter than the debounce time is ignored",
			[]sample{{0, false}, {50 * ms, false}, {100 * ms, true}, {130 * ms, false}, {200 * ms, false}},
			[]report{{50 * ms, false}}},
		{"change held for the debounce time counts",
			[]sample{{0, false}, {50 * ms, false}, {100 * ms, true}, {149 * ms, true}, {150 * ms, true}},
			[]report{{50 * ms, false}, {150 * ms, true}}},
		{"bounces then settles: one change",
			[]sample{{0, false}, {50 * ms, false}, {100 * ms, true}, {102 * ms, false}, {105 * ms, true}, {109 * ms, false}, {110 * ms, true}, {160 * ms, true}},
			[]report{{50 * ms, false}, {160 * ms, true}}},
		{"level seen late is still reported",
			[]sample{{0, true}, {400 * ms, true}},
			[]report{{400 * ms, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := debouncer{hold: DefaultDebounce}
			var got []report
			for _, s := range tc.samples {
				if v, ok := d.observe(s.v, t0.Add(s.at)); ok {
					got = append(got, report{s.at, v})
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("reports %v, want %v", got, tc.want)
			}
		})
	}
	d := debouncer{hold: DefaultDebounce}
	if _, ok := d.due(); ok {
		t.Error("due before any sample")
	}
	d.observe(true, t0)
	if due, ok := d.due(); !ok || !due.Equal(t0.Add(DefaultDebounce)) {
		t.Errorf("due %v %t", due, ok)
	}
}

func TestInputWiring(t *testing.T) {
	tests := []struct {
		opts        InputOpts
		pull        gpio.Pull
		activeLevel gpio.Level
	}{
		{InputOpts{}, gpio.PullUp, gpio.Low},                                       // NO to ground: pressed pulls low
		{InputOpts{NormallyClosed: true}, gpio.PullUp, gpio.High},                  // NC to ground: opening lets the pull-up win
		{InputOpts{PullDown: true}, gpio.PullDown, gpio.High},                      // NO to 3.3 V
		{InputOpts{PullDown: true, NormallyClosed: true}, gpio.PullDown, gpio.Low}, // NC to 3.3 V
	}
	for _, tc := range tests {
		p := newInPin("GPIO27")
		in, err := NewInput(p, &tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Pull() != tc.pull {
			t.Errorf("%+v: pull %v, want %v", tc.opts, p.Pull(), tc.pull)
		}
		setLevel(p, tc.activeLevel)
		if !in.Active() {
			t.Errorf("%+v: level %v not active", tc.opts, tc.activeLevel)
		}
		setLevel(p, !tc.activeLevel)
		if in.Active() {
			t.Errorf("%+v: level %v active", tc.opts, !tc.activeLevel)
		}
	}
}

func TestInputErrors(t *testing.T) {
	if _, err := NewInput(nil, nil); err == nil {
		t.Error("nil pin accepted")
	}
	if _, err := NewInput(newInPin("x"), &InputOpts{Debounce: time.Second}); err == nil {
		t.Error("1 s debounce accepted")
	}
	if _, err := NewInput(newInPin("x"), &InputOpts{Debounce: -time.Millisecond}); err == nil {
		t.Error("negative debounce accepted")
	}
	in, err := NewInput(newInPin("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Run(context.Background(), nil); err == nil {
		t.Error("Run without a callback accepted")
	}
}

type changeLog struct {
	mu  sync.Mutex
	got []bool
}

func (c *changeLog) add(v bool, _ time.Time) {
	c.mu.Lock()
	c.got = append(c.got, v)
	c.mu.Unlock()
}

func (c *changeLog) list() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// TestInputRun drives a normally-closed door contact through edges, a
// glitch and a lost edge, in a synctest bubble where time.Sleep moves the
// fake clock.
func TestInputRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Door closed: NC contact conducts, pin pulled to ground.
		p := newInPin("GPIO27")
		in, err := NewInput(p, &InputOpts{NormallyClosed: true})
		if err != nil {
			t.Fatal(err)
		}
		setLevel(p, gpio.Low)
		ctx, cancel := context.WithCancel(t.Context())
		var log changeLog
		done := make(chan error)
		go func() { done <- in.Run(ctx, log.add) }()

		expect := func(step string, want ...bool) {
			t.Helper()
			synctest.Wait()
			if got := log.list(); !slices.Equal(got, want) {
				t.Fatalf("%s: changes %v, want %v", step, got, want)
			}
		}
		time.Sleep(49 * ms)
		expect("before the debounce time")
		time.Sleep(ms)
		expect("initial level", false)

		// A 20 ms glitch: ignored.
		p.EdgesChan <- gpio.High
		time.Sleep(20 * ms)
		p.EdgesChan <- gpio.Low
		time.Sleep(200 * ms)
		expect("glitch", false)

		// The door opens.
		p.EdgesChan <- gpio.High
		time.Sleep(49 * ms)
		expect("opening, not yet stable", false)
		time.Sleep(ms)
		expect("open", false, true)

		// The door closes but the kernel loses the edge: the level is still
		// reported within 400 ms.
		setLevel(p, gpio.Low)
		time.Sleep(400 * ms)
		expect("lost edge", false, true, false)

		cancel()
		time.Sleep(inputRecheck)
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		default:
			t.Fatal("Run did not return after cancel")
		}
	})
}

// TestInputPolling covers a pin without edge detection.
func TestInputPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &gpiotest.Pin{N: "GPIO22"} // no EdgesChan: no edge detection
		in, err := NewInput(p, nil)     // NO exit button to ground
		if err != nil {
			t.Fatal(err)
		}
		setLevel(p, gpio.High)
		if in.edges {
			t.Fatal("edges on a pin without them")
		}
		ctx, cancel := context.WithCancel(t.Context())
		var log changeLog
		done := make(chan error)
		go func() { done <- in.Run(ctx, log.add) }()
		time.Sleep(60 * ms)
		setLevel(p, gpio.Low) // pressed
		time.Sleep(30 * ms)
		setLevel(p, gpio.High) // bounce
		time.Sleep(10 * ms)
		setLevel(p, gpio.Low)
		time.Sleep(70 * ms)
		synctest.Wait()
		if got := log.list(); !slices.Equal(got, []bool{false, true}) {
			t.Fatalf("changes %v, want [false true]", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
