package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	sitestore "github.com/latchdoor/latch/store/site"
)

// The collector's figure, through a real mosquitto on loopback:
//
//	go test ./mqtt/site -run '^$' -bench Collector100Doors -benchtime 3x
//
// 100 approved doors each publish their whole chain of signed events at
// once, and the clock stops when every door holds the site's signed ack
// of its last event and the site has stored every chain contiguously.
// LATCH_BENCH_MOSQUITTO adds lines to the broker's configuration
// ("max_inflight_messages 100", say).

const (
	benchDoors         = 100
	benchEventsPerDoor = 300 // 30,000 events an iteration
)

// benchDoor is a door of the benchmark: its identity, its events as it
// publishes them, and the seq of the last.
type benchDoor struct {
	*testDoor
	msgs [][]byte
	last uint64
}

// newBenchDoors makes n doors that trust sg, each with a chain of
// perDoor signed events.
func newBenchDoors(b *testing.B, sg *mqtt.Signer, n, perDoor int) []*benchDoor {
	b.Helper()
	ds := make([]*benchDoor, n)
	for i := range ds {
		name := fmt.Sprintf("door-%03d", i)
		id, err := mqtt.NewIdentity()
		if err != nil {
			b.Fatal(err)
		}
		d := &benchDoor{testDoor: &testDoor{t: b, name: name, id: id, st: openStore(b), v: newVerifier(b, name, id, sg), top: mqtt.TopicsFor(site)}}
		evs := d.events(perDoor)
		for _, e := range evs {
			d.msgs = append(d.msgs, d.eventMsg(e, d.id))
		}
		d.last = evs[len(evs)-1].Seq
		ds[i] = d
	}
	return ds
}

func BenchmarkCollector100Doors(b *testing.B) {
	if _, err := brokertest.Mosquitto(); err != nil {
		b.Skip(err)
	}
	sg := newSigner(b, "site-1")
	ds := newBenchDoors(b, sg, benchDoors, benchEventsPerDoor)
	users := map[string]string{"site": "site-secret"}
	for _, d := range ds {
		users[d.name] = d.name + "-secret"
	}
	total := benchDoors * benchEventsPerDoor
	acks := 0
	var cpu, brokerCPU time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		children := cpuTime(b, syscall.RUSAGE_CHILDREN)
		it := startBenchIteration(b, sg, ds, users)
		self := cpuTime(b, syscall.RUSAGE_SELF)
		b.StartTimer()
		err := it.run()
		b.StopTimer()
		cpu += cpuTime(b, syscall.RUSAGE_SELF) - self
		if err == nil {
			err = it.check()
		}
		acks += it.s.Stats().AcksSent
		it.stop()
		brokerCPU += cpuTime(b, syscall.RUSAGE_CHILDREN) - children
		if err != nil {
			b.Fatal(err)
		}
	}
	events := float64(total * b.N)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(benchEventsPerDoor, "events/door")
	b.ReportMetric(float64(acks)/events, "acks/event")
	// What the figure costs, whatever else the machine runs: the CPU time
	// of this process (the site and the doors' clients) while measured,
	// and of the broker for the whole iteration.
	b.ReportMetric(float64(cpu.Microseconds())/events, "cpu-us/event")
	b.ReportMetric(float64(brokerCPU.Microseconds())/events, "broker-cpu-us/event")
}

// cpuTime returns the user and system CPU time of who
// (syscall.RUSAGE_SELF or syscall.RUSAGE_CHILDREN, the children waited
// for).
func cpuTime(b *testing.B, who int) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchIteration is one measured round: a fresh broker, site and
// database, and the doors connected to them.
type benchIteration struct {
	b      *testing.B
	br     *brokertest.Broker
	s      *Site
	db     *sitestore.DB
	ds     []*benchDoor
	pcs    []paho.Client
	acks   []chan []byte
	cancel context.CancelFunc
	done   chan struct{}
}

// startBenchIteration starts a broker (with no limit on the messages it
// queues for the site: every door sends its whole chain at once), a site
// on a new database with every door approved, and connects the doors,
// each subscribed to its acks.
func startBenchIteration(b *testing.B, sg *mqtt.Signer, ds []*benchDoor, users map[string]string) *benchIteration {
	b.Helper()
	it := &benchIteration{b: b, ds: ds, done: make(chan struct{})}
	it.br = brokertest.Start(b, brokertest.Config{Users: users, ACL: brokertest.ACL(site), NoDelay: true, MaxQueued: -1, Extra: os.Getenv("LATCH_BENCH_MOSQUITTO")})
	db, err := sitestore.Open(filepath.Join(b.TempDir(), "site.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	it.db = db
	for _, d := range ds {
		id := d.id.Public()
		if err := Provision(db, d.name, &id, nil); err != nil {
			b.Fatal(err)
		}
	}
	it.s, err = New(Options{Broker: it.br.URL(), Username: "site", Password: users["site"], Site: site, Signer: sg,
		DB: db, Logger: testLogger(), ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	var ctx context.Context
	ctx, it.cancel = context.WithCancel(context.Background())
	go func() { defer close(it.done); _ = it.s.Run(ctx) }()
	waitFor(b, "site connected", it.s, func() bool { return it.s.Stats().Connected })
	for _, d := range ds {
		acks := make(chan []byte, benchEventsPerDoor)
		o := paho.NewClientOptions().AddBroker(it.br.URL()).SetClientID("latch-hq-" + d.name).
			SetUsername(d.name).SetPassword(users[d.name]).SetCleanSession(true).SetProtocolVersion(4)
		pc := paho.NewClient(o)
		if tok := pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatalf("%s: connect: %v", d.name, tok.Error())
		}
		it.pcs = append(it.pcs, pc)
		tok := pc.Subscribe(d.top.EventsAck(d.name), 1, func(_ paho.Client, m paho.Message) {
			// Never full: the site acks a door at most once for each
			// batch holding one of its events.
			acks <- m.Payload()
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatalf("%s: subscribe: %v", d.name, tok.Error())
		}
		it.acks = append(it.acks, acks)
	}
	return it
}

// run publishes every door's chain at once, one goroutine a door, and
// waits until each door has the signed ack of its last event.
func (it *benchIteration) run() error {
	errs := make([]error, len(it.ds))
	var wg sync.WaitGroup
	for i, d := range it.ds {
		wg.Go(func() { errs[i] = d.sendAll(it.pcs[i], it.acks[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w; stats %+v", err, it.s.Stats())
	}
	return nil
}

// sendAll publishes the door's events (QoS 1) without waiting between
// them, then waits for their PUBACKs and for the site's ack of the last.
func (d *benchDoor) sendAll(pc paho.Client, acks <-chan []byte) error {
	toks := make([]paho.Token, len(d.msgs))
	for i, m := range d.msgs {
		toks[i] = pc.Publish(d.top.Events(d.name), 1, false, m)
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			return fmt.Errorf("%s: publish: %v", d.name, tok.Error())
		}
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case b := <-acks:
			// Only the ack of the last event is verified: the door's
			// CPU is the site's here, and it is not what is measured.
			if ackSeq(b) != d.last {
				continue
			}
			m, _, err := d.v.Open(b)
			if err != nil {
				return fmt.Errorf("%s: ack: %w", d.name, err)
			}
			if m.Head().Seq == d.last {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("%s: no ack of event %d", d.name, d.last)
		}
	}
}

// check confirms that the site stored every door's chain contiguously,
// each event once.
func (it *benchIteration) check() error {
	for _, d := range it.ds {
		if got := it.s.Contiguous(d.name); got != d.last {
			return fmt.Errorf("%s: contiguous %d, want %d", d.name, got, d.last)
		}
	}
	st := it.s.Stats()
	if want := len(it.ds) * benchEventsPerDoor; st.EventsStored != want || st.Unattributed != 0 || st.Malformed != 0 || st.Gaps != 0 || st.ChainBreaks != 0 {
		return fmt.Errorf("stored %d events of %d; stats %+v", st.EventsStored, want, st)
	}
	return nil
}

// stop disconnects the doors and stops the site, the broker and the
// database.
func (it *benchIteration) stop() {
	for _, pc := range it.pcs {
		pc.Disconnect(0)
	}
	it.cancel()
	<-it.done
	it.br.Stop()
	if err := it.db.Close(); err != nil {
		it.b.Error(err)
	}
}

// ackSeq returns the seq an ack names, unverified (0 if it does not
// decode).
func ackSeq(b []byte) uint64 {
	var env struct {
		Payload struct {
			Seq uint64 `json:"seq"`
		} `json:"payload"`
	}
	if json.Unmarshal(b, &env) != nil {
		return 0
	}
	return env.Payload.Seq
}
