package mqtt_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/brokertest"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/mqtt/sitetest"
	"github.com/latchdoor/latch/store"
)

// hang is the overall deadline of any wait: it only fails a test that
// hangs.
const hang = 90 * time.Second

const site = "hq"

var users = map[string]string{"site": "site-secret", "front": "front-secret", "back": "back-secret"}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("LATCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testDoor stands in for the door controller: it records what the client
// asks of it.
type testDoor struct {
	mu       sync.Mutex
	unlocks  []string
	lockdown bool
	stale    bool
	policy   string // the stale policy the door reports
	staleN   int
	unsynced bool // the door's clock is not synced
	block    *gate
	changed  chan struct{}
}

// gate holds a call to the door until opened.
type gate struct {
	entered chan struct{} // closed when the call starts waiting
	open    chan struct{}
}

func newTestDoor() *testDoor { return &testDoor{changed: make(chan struct{})} }

func (d *testDoor) note() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *testDoor) Unlock(_ context.Context, dur time.Duration, by string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unlocks = append(d.unlocks, fmt.Sprintf("%s %s", dur, by))
	d.note()
	return nil
}

// blockLockdown makes the next SetLockdown wait (keeping the client busy)
// until the gate opens.
func (d *testDoor) blockLockdown() *gate {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.block = &gate{entered: make(chan struct{}), open: make(chan struct{})}
	return d.block
}

func (d *testDoor) SetLockdown(ctx context.Context, on bool, _ string) error {
	d.mu.Lock()
	g := d.block
	d.block = nil
	d.mu.Unlock()
	if g != nil {
		close(g.entered)
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lockdown = on
	d.note()
	return nil
}

func (d *testDoor) SetStale(_ context.Context, stale bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stale = stale
	d.staleN++
	d.note()
	return nil
}

func (d *testDoor) Status() mqtt.DoorStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := store.TimeSynced
	if d.unsynced {
		q = store.TimeUnsynced
	}
	return mqtt.DoorStatus{Contact: mqtt.ContactClosed, Lockdown: d.lockdown, Reader: mqtt.Health{OK: true}, Journal: mqtt.Health{OK: true},
		Clock: q, StalePolicy: d.policy}
}

// SetUnsynced says whether the door's clock is synced.
func (d *testDoor) SetUnsynced(unsynced bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsynced = unsynced
}

func (d *testDoor) Unlocks() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.unlocks)
}

func (d *testDoor) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// waitFor waits until cond holds, re-checking whenever one of the
// channels returned by the watch functions closes. It fails the test only
// on a hang.
func waitFor(t testing.TB, what string, cond func() bool, watch ...func() <-chan struct{}) {
	t.Helper()
	deadline := time.NewTimer(hang)
	defer deadline.Stop()
	cases := make([]reflect.SelectCase, 1+len(watch))
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline.C)}
	for {
		for i, w := range watch {
			cases[1+i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w())}
		}
		if cond() {
			return
		}
		if chosen, _, _ := reflect.Select(cases); chosen == 0 {
			t.Fatalf("timed out after %s waiting for %s", hang, what)
		}
	}
}

// env is a broker (behind a proxy for the doors) and a running site.
type env struct {
	t      testing.TB
	broker *brokertest.Broker
	proxy  *brokertest.Proxy
	signer *mqtt.Signer
	keys   map[string]ed25519.PublicKey
	ids    map[string]*mqtt.Identity // the doors' identities, approved at the site
	idDirs map[string]string         // the directories of their identity files
	site   *sitetest.Site
	stop   func() // stops the site
}

type envConfig struct {
	broker brokertest.Config
	site   func(*sitetest.Options)
	noSite bool
}

func newSigner(t testing.TB, kid string) *mqtt.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mqtt.NewSigner(kid, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	bc := cfg.broker
	if bc.Users == nil {
		bc.Users = users
	}
	if bc.ACL == "" {
		bc.ACL = brokertest.ACL(site)
	}
	e := &env{t: t, broker: brokertest.Start(t, bc)}
	e.proxy = brokertest.NewProxy(t, e.broker.Addr())
	e.signer = newSigner(t, "site-2026")
	e.keys = map[string]ed25519.PublicKey{e.signer.KeyID(): e.signer.Public()}
	e.ids, e.idDirs = make(map[string]*mqtt.Identity), make(map[string]string)
	for name := range users {
		if name == "site" {
			continue
		}
		dir := t.TempDir()
		id, err := mqtt.CreateIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		e.ids[name], e.idDirs[name] = id, dir
	}
	if !cfg.noSite {
		e.startSite(cfg.site)
	}
	return e
}

// startSite runs the site on the broker directly (not through the proxy).
func (e *env) startSite(edit func(*sitetest.Options)) {
	t := e.t
	so := sitetest.Options{
		Options: mqttsite.Options{
			Broker: e.broker.URL(), Username: "site", Password: users["site"],
			Site: site, Signer: e.signer, Logger: logger(t), ReconnectMax: 200 * time.Millisecond,
		},
		DBPath: filepath.Join(t.TempDir(), "site.db"),
		Doors:  make(map[string]mqtt.PublicIdentity),
	}
	for name, id := range e.ids {
		so.Doors[name] = id.Public()
	}
	if e.broker.PKI != nil {
		so.TLS = e.broker.PKI.ClientTLS("site")
	}
	if edit != nil {
		edit(&so)
	}
	s, err := sitetest.New(so)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	e.site = s
	e.stop = func() {
		cancel()
		<-done
		s.Close()
	}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			e.stop = nil
		}
	})
	waitFor(t, "site connected", func() bool { return s.Stats().Connected }, s.Updated)
}

// rig is one door: its store and client, running.
type rig struct {
	t      testing.TB
	name   string
	path   string
	st     *store.Store
	j      *store.Journal
	door   *testDoor
	client *mqtt.Client
	opts   mqtt.Options
	cancel context.CancelFunc
	done   chan error
}

// fastOptions are client options shrunk for tests.
func (e *env) fastOptions(name string) mqtt.Options {
	o := mqtt.Options{
		Broker: "tcp://" + e.proxy.Addr(), Site: site, Door: name,
		Username: name, Password: users[name], TrustedKeys: e.keys, Identity: e.ids[name],
		Logger: logger(e.t), Version: "test",
		KeepAlive: 2 * time.Second, PingTimeout: time.Second,
		ConnectTimeout: 3 * time.Second, WriteTimeout: 2 * time.Second,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		AckTimeout: 2 * time.Second, SyncRetry: 500 * time.Millisecond,
		CheckInterval: 50 * time.Millisecond, StatusInterval: 100 * time.Millisecond,
	}
	if e.broker.PKI != nil {
		o.Broker = "ssl://" + e.proxy.Addr()
		o.TLS = e.broker.PKI.ClientTLS(name)
	}
	return o
}

// newRig opens a door's store (at path, or a new one) without running its
// client.
func (e *env) newRig(name, path string, edit func(*mqtt.Options)) *rig {
	e.t.Helper()
	return e.newRigWith(name, path, nil, edit)
}

// newRigWith is newRig with the client's store wrapped by wrap (nil: the
// store itself).
func (e *env) newRigWith(name, path string, wrap func(*store.Store) mqtt.Store, edit func(*mqtt.Options)) *rig {
	t := e.t
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), name+".db")
	}
	st, err := store.Open(path, &store.Options{SkipCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, name: name, path: path, st: st, door: newTestDoor(), opts: e.fastOptions(name)}
	if edit != nil {
		edit(&r.opts)
	}
	var cs mqtt.Store = st
	if wrap != nil {
		cs = wrap(st)
	}
	r.j, err = openJournal(st, name)
	if err != nil {
		t.Fatal(err)
	}
	r.client, err = mqtt.New(cs, r.j, r.door, &r.opts)
	if err != nil {
		t.Fatal(err)
	}
	notifyTo(st, r.client)
	t.Cleanup(r.close)
	return r
}

// journals are the open journals of the tests' stores, and the clients
// their stored events go to, as the daemon wires them.
var journals sync.Map // *store.Store → *journalLink

type journalLink struct {
	j      *store.Journal
	client atomic.Pointer[mqtt.Client]
}

// openJournal opens the journal of a door's store.
func openJournal(st *store.Store, door string) (*store.Journal, error) {
	link := &journalLink{}
	j, err := store.OpenJournal(st, &store.JournalOptions{Door: door, OnStored: func(evs []store.Event) {
		if c := link.client.Load(); c != nil {
			for _, e := range evs {
				c.Notify(e)
			}
		}
	}})
	if err != nil {
		return nil, err
	}
	link.j = j
	journals.Store(st, link)
	return j, nil
}

// notifyTo sends the stored events of st's journal to c.
func notifyTo(st *store.Store, c *mqtt.Client) {
	if v, ok := journals.Load(st); ok {
		v.(*journalLink).client.Store(c)
	}
}

// closeJournal closes the journal of st, if open.
func closeJournal(t testing.TB, st *store.Store) {
	if v, ok := journals.LoadAndDelete(st); ok {
		if err := v.(*journalLink).j.Close(); err != nil {
			t.Errorf("journal: %v", err)
		}
	}
}

// syncJournal waits until everything added to st's journal so far is
// written.
func syncJournal(t testing.TB, st *store.Store) {
	t.Helper()
	v, ok := journals.Load(st)
	if !ok {
		return
	}
	done := make(chan error, 1)
	v.(*journalLink).j.Add(store.JournalEntry{Done: func(_ []store.Event, err error) { done <- err }})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("journal: %v", err)
		}
	case <-time.After(hang):
		t.Fatal("journal: no answer")
	}
}

// start runs the client.
func (r *rig) start() *rig {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.client.Run(ctx) }()
	return r
}

// stop stops the client cleanly (offline status, disconnect).
func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("%s: Run: %v", r.name, err)
	}
	r.cancel = nil
}

func (r *rig) close() {
	r.stop()
	closeJournal(r.t, r.st)
	r.st.Close()
}

func (r *rig) waitConnected() {
	r.t.Helper()
	waitFor(r.t, r.name+" connected", func() bool { return r.client.Stats().Connected }, r.client.Updated)
}

// waitSynced waits until the door has applied the site's head of its view.
func (e *env) waitSynced(r *rig) {
	e.t.Helper()
	seq, hash := e.site.Head(r.name)
	waitFor(e.t, fmt.Sprintf("%s at seq %d", r.name, seq), func() bool {
		s := r.client.Stats()
		return s.AppliedSeq == seq && s.SnapshotHash == hash
	}, r.client.Updated)
}

// uid returns a 4-byte UID for n.
func uid(n uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, n|0x10000000)
}

func card(n uint32, doors ...string) store.Op {
	return store.Op{Kind: store.OpUpsertCard, Card: &store.Card{
		UID: uid(n), HolderID: fmt.Sprintf("h%d", n), HolderName: fmt.Sprintf("Holder %d", n), Doors: doors,
		Flags: store.Flags{CardOnly: true},
	}}
}

func revoke(n uint32) store.Op {
	return store.Op{Kind: store.OpRevokeCard, UID: uid(n), Reason: "lost"}
}

// decide asks the door's store about card n at door name.
func decide(t testing.TB, st *store.Store, name string, n uint32) store.Decision {
	t.Helper()
	d, err := st.Decide(store.Request{UID: uid(n), Door: name, Mode: store.ModeCardOnly, Now: time.Now(), ClockTrusted: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// allEvents reads every audit event of a door's store.
func allEvents(t testing.TB, st *store.Store) []store.Event {
	t.Helper()
	syncJournal(t, st)
	var out []store.Event
	var after uint64
	for {
		evs, err := st.EventsAfter(after, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Seq
	}
}

// checkCollected asserts that the site stored exactly the door's events,
// each once, in order.
func checkCollected(t testing.TB, s *sitetest.Site, name string, want []store.Event) {
	t.Helper()
	got, err := s.Events(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("site stored %d events of %s, door has %d", len(got), name, len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Hash != want[i].Hash || got[i].Prev != want[i].Prev {
			t.Fatalf("event %d: site has seq %d hash %s, door seq %d hash %s", i, got[i].Seq, got[i].Hash, want[i].Seq, want[i].Hash)
		}
	}
	st := s.Stats()
	if st.Conflicts != 0 || st.ChainBreaks != 0 {
		t.Fatalf("site saw %d conflicts and %d chain breaks", st.Conflicts, st.ChainBreaks)
	}
}

// appendEvents appends n access events to a door's store.
func appendEvents(t testing.TB, st *store.Store, name string, n int) []store.Event {
	t.Helper()
	evs := make([]store.Event, n)
	for i := range evs {
		evs[i] = store.Event{Time: time.Now(), Clock: store.TimeSynced, Door: name, Type: store.TypeAccess,
			Reason: store.ReasonGranted, UID: fmt.Sprintf("%08X", i), Detail: strings.Repeat("x", 40)}
	}
	out, err := st.AppendMany(evs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
