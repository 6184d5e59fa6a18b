package pn532_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/latchdoor/latch/reader/pn532"
	"github.com/latchdoor/latch/reader/pn532/pn532test"
)

var (
	classic = pn532test.Card{UID: hx("DE AD BE EF"), SAK: 0x08}
	ntag    = pn532test.Card{UID: hx("04 C6 3A 63 11 01 89")}
	triple  = pn532test.Card{UID: hx("04 01 02 03 04 05 06 07 08 09")}
)

func newDev(t testing.TB, chip *pn532test.Chip, edit func(*pn532.Opts)) *pn532.Dev {
	t.Helper()
	o := fastOpts
	if edit != nil {
		edit(&o)
	}
	d, err := pn532.NewSPI(chip, &o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func poll(t testing.TB, d *pn532.Dev) (pn532.Target, error) {
	t.Helper()
	return d.Poll(context.Background())
}

func mustCard(t testing.TB, d *pn532.Dev, uid []byte) pn532.Target {
	t.Helper()
	tg, err := poll(t, d)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	if !bytes.Equal(tg.UID, uid) {
		t.Fatalf("UID % X, want % X", tg.UID, uid)
	}
	return tg
}

func mustEmpty(t testing.TB, d *pn532.Dev) {
	t.Helper()
	if tg, err := poll(t, d); err != pn532.ErrNoTarget {
		t.Fatalf("poll: %v, %v; want ErrNoTarget", tg, err)
	}
}

func TestInitConfiguresTheChip(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, func(o *pn532.Opts) { o.MaxRetries = 2 })
	// Without a reset pin the field is switched off last.
	if got := chip.Commands(); !bytes.Equal(got, []byte{0x14, 0x02, 0x32, 0x12, 0x32}) {
		t.Fatalf("init sent % X: SAMConfiguration must come first", got)
	}
	if chip.Field() {
		t.Fatal("field on after init")
	}
	if sam, retries := chip.Configured(); !sam || retries != 2 {
		t.Fatalf("SAM %v, MaxRetries %d", sam, retries)
	}
	if fw := d.FirmwareVersion(); fw.IC != 0x32 || fw.String() != "PN532 v1.6 (ISO14443A ISO14443B ISO18092)" {
		t.Fatalf("%v", fw)
	}
	if err := d.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCardsOfEverySize(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	mustEmpty(t, d)
	for _, c := range []pn532test.Card{classic, ntag, triple} {
		if err := chip.Present(c); err != nil {
			t.Fatal(err)
		}
		tg := mustCard(t, d, c.UID)
		if tg.RandomUID || tg.ATS != nil {
			t.Fatalf("%v", tg)
		}
	}
	tg := mustCard(t, d, triple.UID)
	if tg.ATQA != 0x0084 {
		t.Fatalf("ATQA %04X", tg.ATQA)
	}
	chip.Remove()
	mustEmpty(t, d)
}

// A card left on the reader answers every poll: the driver resets it
// between polls (a selected card does not answer a new activation).
func TestRestingCardAnswersEveryPoll(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	if err := chip.Present(ntag); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		mustCard(t, d, ntag.UID)
	}
	// Release switches the field off ahead of time.
	if err := d.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if chip.Field() {
		t.Fatal("field still on after Release")
	}
	before := chip.Stats().Commands
	mustCard(t, d, ntag.UID)
	if n := chip.Stats().Commands - before; n != 1 {
		t.Fatalf("%d commands for a poll after Release, want 1", n)
	}
}

func TestRandomUID(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	if err := chip.Present(pn532test.Card{RandomUID: true}); err != nil {
		t.Fatal(err)
	}
	a, err := poll(t, d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := poll(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if !a.RandomUID || !b.RandomUID || a.UID[0] != 0x08 || bytes.Equal(a.UID, b.UID) {
		t.Fatalf("%v then %v", a, b)
	}
}

func TestDataExchange(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	ctx := context.Background()
	desfire := pn532test.Card{
		UID:  hx("04 11 22 33 44 55 66"),
		ATQA: 0x0344,
		ATS:  hx("06 75 77 81 02 80"),
		APDU: func(req []byte) ([]byte, byte) {
			switch {
			case bytes.Equal(req, hx("90 60 00 00 00")): // GetVersion
				return hx("04 01 01 01 00 18 05 91 AF"), 0
			case req[0] == 0xAA: // authentication that fails
				return nil, 0x14
			case req[0] == 0xEE: // echo, any length
				return req, 0
			case req[0] == 0xBB: // more than one answer holds
				return make([]byte, 300), 0
			}
			return nil, 0x01
		},
	}
	if err := chip.Present(desfire); err != nil {
		t.Fatal(err)
	}
	tg := mustCard(t, d, desfire.UID)
	if !tg.ISODEP() || !bytes.Equal(tg.ATS, desfire.ATS) || tg.SAK != 0x20 {
		t.Fatalf("%v", tg)
	}
	resp, err := d.DataExchange(ctx, tg.Tg, hx("90 60 00 00 00"))
	if err != nil || !bytes.Equal(resp, hx("04 01 01 01 00 18 05 91 AF")) {
		t.Fatalf("GetVersion: % X, %v", resp, err)
	}
	// Extended frames both ways.
	long := make([]byte, 262)
	for i := range long {
		long[i] = byte(i)
	}
	long[0] = 0xEE
	if resp, err := d.DataExchange(ctx, tg.Tg, long); err != nil || !bytes.Equal(resp, long) {
		t.Fatalf("262 bytes: %d bytes, %v", len(resp), err)
	}
	if _, err := d.DataExchange(ctx, tg.Tg, make([]byte, 263)); err == nil {
		t.Fatal("263 bytes accepted")
	}
	_, err = d.DataExchange(ctx, tg.Tg, hx("AA 00"))
	var se *pn532.StatusError
	if !errors.Is(err, pn532.ErrAuth) || !errors.As(err, &se) || se.Code != 0x14 {
		t.Fatalf("failed authentication: %v", err)
	}
	if resp, err := d.DataExchange(ctx, tg.Tg, hx("BB")); !errors.Is(err, pn532.ErrMoreData) || len(resp) != 262 {
		t.Fatalf("chained answer: %d bytes, %v", len(resp), err)
	}
	if _, err := d.DataExchange(ctx, 2, hx("90 60 00 00 00")); !errors.Is(err, pn532.ErrNotAllowed) {
		t.Fatalf("no target 2: %v", err)
	}
	chip.Remove()
	if _, err := d.DataExchange(ctx, tg.Tg, hx("90 60 00 00 00")); !errors.Is(err, pn532.ErrTimeout) {
		t.Fatalf("card gone: %v", err)
	}
	// Status errors are the card's business, not the reader's: no re-init.
	before := chip.Stats().PowerUps
	mustEmpty(t, d)
	if got := chip.Commands(); got[len(got)-1] != 0x4A || chip.Stats().PowerUps != before {
		t.Fatalf("commands % X", got)
	}
}

// The first command after power-up may only wake the chip.
func TestFirstCommandLost(t *testing.T) {
	chip := pn532test.New(&pn532test.Opts{LoseFirstCommand: true})
	d := newDev(t, chip, nil)
	if s := chip.Stats(); s.Dropped != 1 || s.Aborts != 1 {
		t.Fatalf("%+v", s)
	}
	if err := chip.Present(classic); err != nil {
		t.Fatal(err)
	}
	mustCard(t, d, classic.UID)
}

// A host that restarts finds the answer its predecessor left.
func TestStaleResponseAfterHostRestart(t *testing.T) {
	chip := pn532test.New(nil)
	// The previous process sent GetFirmwareVersion, read the ACK and died.
	c, err := chip.Connect(physic.MegaHertz, spi.Mode0, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Tx(wire(append([]byte{0x01}, hx("00 00 FF 02 FE D4 02 2A 00")...)), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Tx(wire(append([]byte{0x03}, make([]byte, 6)...)), make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	d := newDev(t, chip, nil)
	if fw := d.FirmwareVersion(); fw.IC != 0x32 {
		t.Fatalf("%v", fw)
	}
	if s := chip.Stats(); s.Aborts != 1 || s.Dropped != 0 {
		t.Fatalf("%+v", s)
	}
	// Same thing with the answer still unacknowledged, left by the emulator.
	chip.LeaveStaleResponse()
	newDev(t, chip, nil)
	// And once running: the stale answer comes where the ACK is due.
	chip.LeaveStaleResponse()
	mustEmpty(t, d)

	// A previous process left InListPassiveTarget waiting for a card (the
	// chip fresh from power-up retries forever): the chip is busy and
	// ignores SAMConfiguration until it is aborted.
	chip.PowerCycle()
	if err := c.Tx(wire(append([]byte{0x01}, hx("00 00 FF 04 FC D4 4A 01 00 E1 00")...)), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Tx(wire(append([]byte{0x03}, make([]byte, 6)...)), make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	dropped := chip.Stats().Dropped
	d = newDev(t, chip, nil)
	if chip.Stats().Dropped != dropped+1 {
		t.Fatal("SAMConfiguration was not ignored by the busy chip")
	}
	mustEmpty(t, d)
}

func TestCorruptResponseIsAskedAgain(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	if err := chip.Present(ntag); err != nil {
		t.Fatal(err)
	}
	mustCard(t, d, ntag.UID)
	if err := d.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	chip.CorruptResponses(1)
	before := chip.Stats().NACKs
	mustCard(t, d, ntag.UID)
	if n := chip.Stats().NACKs - before; n != 1 {
		t.Fatalf("%d NACKs", n)
	}
	// Damaged every time: an error, and no UID.
	chip.CorruptResponses(10)
	tg, err := poll(t, d)
	if !errors.Is(err, pn532.ErrFrame) || tg.UID != nil || !strings.Contains(err.Error(), "data checksum") {
		t.Fatalf("got %v, %v", tg, err)
	}
	chip.CorruptResponses(0)
	mustCard(t, d, ntag.UID)
}

func TestSyntaxError(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	chip.SyntaxErrors(1)
	if _, err := poll(t, d); !errors.Is(err, pn532.ErrSyntax) {
		t.Fatalf("got %v", err)
	}
	mustEmpty(t, d)
}

// The busy chip tests run in a synctest bubble: the driver's timeouts and
// the context's deadline use the bubble's fake clock, which moves only
// while the driver waits, so a test goroutine held up by a loaded machine
// cannot use them up before the chip has the command.
func TestBusyChip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		chip := pn532test.New(nil)
		d := newDev(t, chip, nil)
		chip.Busy(5)
		mustEmpty(t, d)
		// Busy for good: the command is aborted after ResponseTimeout.
		chip.Busy(-1)
		aborts := chip.Stats().Aborts
		_, err := poll(t, d)
		if !errors.Is(err, pn532.ErrNoResponse) || !strings.Contains(err.Error(), "InListPassiveTarget") {
			t.Fatalf("got %v", err)
		}
		if chip.Stats().Aborts != aborts+1 {
			t.Fatal("no abort")
		}
		mustEmpty(t, d)
	})
}

func TestContextEndsAWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		chip := pn532test.New(nil)
		d := newDev(t, chip, func(o *pn532.Opts) { o.ResponseTimeout = time.Hour })
		chip.Busy(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, err := d.Poll(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
		if chip.Stats().Aborts != 1 {
			t.Fatal("the running command was not aborted")
		}
		// A cancelled context is not a reader failure.
		mustEmpty(t, d)
		done, cancel2 := context.WithCancel(context.Background())
		cancel2()
		if _, err := d.Poll(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestNoDevice(t *testing.T) {
	for _, tc := range []struct {
		miso byte
		want string
	}{
		{0xFF, "always read 0xFF: MISO is floating"},
		{0x00, "always read 0x00"},
	} {
		chip := pn532test.New(nil)
		chip.Unplug(tc.miso)
		o := fastOpts
		_, err := pn532.NewSPI(chip, &o)
		if !errors.Is(err, pn532.ErrNoDevice) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "pn532: pn532test: SAMConfiguration: ") {
			t.Errorf("MISO %02X: got %v", tc.miso, err)
		}
	}
}

func TestWrongChip(t *testing.T) {
	chip := pn532test.New(&pn532test.Opts{Firmware: [4]byte{0x33, 0x02, 0x01, 0x07}})
	o := fastOpts
	_, err := pn532.NewSPI(chip, &o)
	if !errors.Is(err, pn532.ErrWrongChip) || !strings.Contains(err.Error(), "IC 0x33") {
		t.Fatalf("got %v", err)
	}
}

func TestNoAnswer(t *testing.T) {
	chip := pn532test.New(nil)
	chip.Busy(-1)
	o := fastOpts
	_, err := pn532.NewSPI(chip, &o)
	if !errors.Is(err, pn532.ErrNoResponse) || errors.Is(err, pn532.ErrNoDevice) {
		t.Fatalf("got %v", err)
	}
}

// The reader is unplugged and plugged back in: polls fail, the driver
// re-initialises and pulses the reset pin, and polls work again.
func TestReplugAndReset(t *testing.T) {
	chip := pn532test.New(&pn532test.Opts{LoseFirstCommand: true})
	d := newDev(t, chip, func(o *pn532.Opts) { o.Reset = chip.Reset() })
	if s := chip.Stats(); s.Resets != 1 {
		t.Fatalf("%d reset pulses at start", s.Resets)
	}
	if err := chip.Present(classic); err != nil {
		t.Fatal(err)
	}
	mustCard(t, d, classic.UID)
	chip.Unplug(0xFF)
	for i := range 4 {
		if _, err := poll(t, d); err == nil || errors.Is(err, pn532.ErrNoTarget) {
			t.Fatalf("poll %d while unplugged: %v", i, err)
		} else if i == 3 && !errors.Is(err, pn532.ErrNoDevice) {
			t.Fatalf("poll %d while unplugged: %v", i, err)
		}
	}
	chip.Plug()
	mustCard(t, d, classic.UID)
	if sam, retries := chip.Configured(); !sam || retries != 1 {
		t.Fatal("not configured again")
	}
	if s := chip.Stats(); s.Resets < 3 {
		t.Fatalf("%d reset pulses", s.Resets)
	}
}

// A brown-out resets the chip behind the driver's back: it forgets
// MaxRetries and would wait for a card forever. Two failed polls, then the
// driver configures it again.
func TestPowerCycleBehindTheDriversBack(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	mustEmpty(t, d)
	chip.PowerCycle()
	for i := range 2 {
		if _, err := poll(t, d); !errors.Is(err, pn532.ErrNoResponse) {
			t.Fatalf("poll %d: %v", i, err)
		}
	}
	mustEmpty(t, d)
	if sam, retries := chip.Configured(); !sam || retries != 1 {
		t.Fatal("not configured again")
	}
}

func TestIRQ(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, func(o *pn532.Opts) { o.IRQ = chip.IRQ() })
	if err := chip.Present(classic); err != nil {
		t.Fatal(err)
	}
	before := chip.Stats()
	mustCard(t, d, classic.UID)
	mustCard(t, d, classic.UID)
	if s := chip.Stats(); s.StatusReads != before.StatusReads {
		t.Fatalf("%d status reads with an IRQ pin", s.StatusReads-before.StatusReads)
	}
	chip.Busy(-1)
	if _, err := poll(t, d); !errors.Is(err, pn532.ErrNoResponse) {
		t.Fatalf("got %v", err)
	}
	d2 := newDev(t, chip, func(o *pn532.Opts) { o.IRQ = chip.IRQ(); o.ResponseTimeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	chip.Busy(-1)
	if _, err := d2.Poll(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	chip.Busy(0)
	mustCard(t, d2, classic.UID)
}

// stuckHigh is an IRQ wire that is not connected: the line never falls.
type stuckHigh struct{ *pn532test.IRQPin }

func (stuckHigh) Read() gpio.Level { return gpio.High }

// WaitForEdge waits out its timeout, as a line that never falls does.
func (stuckHigh) WaitForEdge(timeout time.Duration) bool {
	if timeout > 0 {
		time.Sleep(timeout)
	}
	return false
}

func TestBrokenIRQWire(t *testing.T) {
	chip := pn532test.New(nil)
	var logs bytes.Buffer
	d := newDev(t, chip, func(o *pn532.Opts) {
		o.IRQ = stuckHigh{chip.IRQ()}
		o.ACKTimeout = time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	mustEmpty(t, d)
	mustEmpty(t, d)
	if n := strings.Count(logs.String(), "IRQ line stayed high"); n != 1 {
		t.Fatalf("%d warnings:\n%s", n, logs.String())
	}
}

func TestLSBFirst(t *testing.T) {
	o := fastOpts
	o.LSBFirst = true
	_, err := pn532.NewSPI(pn532test.New(nil), &o)
	if err == nil || !strings.Contains(err.Error(), "leave Opts.LSBFirst false") {
		t.Fatalf("got %v", err)
	}
	chip := pn532test.New(&pn532test.Opts{AllowLSBFirst: true})
	d := newDev(t, chip, func(o *pn532.Opts) { o.LSBFirst = true })
	if err := chip.Present(ntag); err != nil {
		t.Fatal(err)
	}
	mustCard(t, d, ntag.UID)
}

func TestOpts(t *testing.T) {
	for _, tc := range []struct {
		o    pn532.Opts
		want string
	}{
		{pn532.Opts{Clock: 10 * physic.MegaHertz}, "outside the PN532's 50kHz to 5MHz"},
		{pn532.Opts{Clock: 10 * physic.KiloHertz}, "outside"},
		{pn532.Opts{MaxRetries: 0xFF}, "retries forever"},
		{pn532.Opts{ACKTimeout: -time.Second}, "ACKTimeout is negative"},
	} {
		o := tc.o
		if _, err := pn532.NewSPI(pn532test.New(nil), &o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v", tc.o, err)
		}
	}
	// nil means DefaultOpts; the caller's struct is never written.
	if _, err := pn532.NewSPI(pn532test.New(nil), nil); err != nil {
		t.Fatal(err)
	}
	o := pn532.Opts{MaxRetries: 3}
	if _, err := pn532.NewSPI(pn532test.New(nil), &o); err != nil || o != (pn532.Opts{MaxRetries: 3}) {
		t.Fatalf("%+v, %v", o, err)
	}
	if pn532.DefaultOpts.Clock != physic.MegaHertz {
		t.Fatal("DefaultOpts changed")
	}
}

func TestHalt(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, func(o *pn532.Opts) { o.PowerDownOnHalt = true })
	if err := chip.Present(classic); err != nil {
		t.Fatal(err)
	}
	mustCard(t, d, classic.UID)
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if chip.Field() || !chip.Asleep() {
		t.Fatal("field on or chip awake after Halt")
	}
	got := chip.Commands()
	if !bytes.Equal(got[len(got)-3:], []byte{0x52, 0x32, 0x16}) {
		t.Fatalf("Halt sent % X", got[len(got)-3:])
	}
	tx := chip.Stats().Tx
	if err := d.Halt(); err != nil || chip.Stats().Tx != tx {
		t.Fatal("second Halt talked to the chip")
	}
	// The next poll wakes the chip.
	mustCard(t, d, classic.UID)
	if chip.Asleep() {
		t.Fatal("asleep")
	}
}

// Many goroutines share one Dev while cards come and go.
func TestConcurrentPolls(t *testing.T) {
	chip := pn532test.New(nil)
	d := newDev(t, chip, nil)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				if g == 0 {
					if i%2 == 0 {
						_ = chip.Present(pn532test.Card{UID: []byte{1, 2, 3, byte(i)}})
					} else {
						chip.Remove()
					}
				}
				tg, err := d.Poll(context.Background())
				if err != nil && err != pn532.ErrNoTarget {
					t.Errorf("poll: %v", err)
					return
				}
				if err == nil && (len(tg.UID) != 4 || tg.UID[0] != 1) {
					t.Errorf("UID % X", tg.UID)
				}
				_ = d.FirmwareVersion()
			}
		}()
	}
	wg.Wait()
}
