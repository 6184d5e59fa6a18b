package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/latchdoor/latch/mqtt/brokertest"
)

// The fleet's flags: hack/fleet.sh N sets them. Without -fleet.doors the
// fleet test runs a small fleet with the same steps and checks.
var (
	fleetDoors    = flag.Int("fleet.doors", 0, "run the fleet with this many doors (hack/fleet.sh); 0: a small fleet")
	fleetCards    = flag.Int("fleet.cards", 1000, "with -fleet.doors: the cards enrolled, each with a PIN")
	fleetEvents   = flag.Duration("fleet.events", time.Minute, "with -fleet.doors: how long every door makes one event a second")
	fleetLatch    = flag.String("fleet.latch", "", "the latch binary (default: built from this module)")
	fleetDir      = flag.String("fleet.dir", "", "where the fleet keeps its data (default: a temporary directory)")
	fleetReport   = flag.String("fleet.report", "", "also write the fleet's figures as JSON to this file")
	fleetDoorsDir = flag.String("fleet.doors-dir", "", "where the doors keep their data directories (default: under -fleet.dir)")
)

// fleetSiteID is the fleet's site.
const fleetSiteID = "fleet"

// fleetPlan is the size of a fleet run.
type fleetPlan struct {
	doors       int
	cards       int
	events      time.Duration
	revocations int
	floorSize   int // doors per floor group
	labSize     int // doors per lab group
	labs        int // lab groups (on the first doors)
}

// planFor sizes a fleet of n doors: every door is in "all" and in its
// floor; the first doors are also in labs of a few doors each.
func planFor(n, cards int, events time.Duration) fleetPlan {
	p := fleetPlan{doors: n, cards: cards, events: events, revocations: 5, floorSize: 50, labSize: 5}
	if n < 100 {
		p.floorSize, p.labSize, p.revocations = max(2, n/3), 2, 2
	}
	p.labs = max(1, n/10/p.labSize)
	return p
}

func (p fleetPlan) doorID(i int) string { return fmt.Sprintf("d%04d", i) }

// groups returns the site groups door i is in.
func (p fleetPlan) groups(i int) []string {
	g := []string{"all", fmt.Sprintf("floor-%02d", i/p.floorSize)}
	if lab := i / p.labSize; lab < p.labs {
		g = append(g, fmt.Sprintf("lab-%02d", lab))
	}
	return g
}

// fleetCard is an enrolled card: its UID, holder, PIN and the group it
// opens.
type fleetCard struct {
	uid, holder, pin, group string
}

// card returns card k: one in twenty opens every door, a quarter a lab,
// the rest a floor.
func (p fleetPlan) card(k int) fleetCard {
	c := fleetCard{uid: fmt.Sprintf("0A%06X", k), holder: fmt.Sprintf("h%05d", k), pin: fleetPIN(0xA000000+uint32(k), k)}
	floors := (p.doors + p.floorSize - 1) / p.floorSize
	switch {
	case k%20 == 0:
		c.group = "all"
	case k%4 == 1:
		c.group = fmt.Sprintf("lab-%02d", k%p.labs)
	default:
		c.group = fmt.Sprintf("floor-%02d", k%floors)
	}
	return c
}

// fleetPIN is a six-digit PIN for card k whose UID is uid: not a prefix or
// suffix of the UID in hex or decimal, which the site refuses.
func fleetPIN(uid uint32, k int) string {
	be := []byte{byte(uid >> 24), byte(uid >> 16), byte(uid >> 8), byte(uid)}
	le := []byte{be[3], be[2], be[1], be[0]}
	forms := []string{fmt.Sprintf("%X", be), fmt.Sprintf("%X", le),
		strconv.FormatUint(uint64(binary.BigEndian.Uint32(be)), 10), strconv.FormatUint(uint64(binary.BigEndian.Uint32(le)), 10)}
	for n := k * 7919; ; n++ {
		pin := fmt.Sprintf("%06d", 100000+n%900000)
		if !slices.ContainsFunc(forms, func(f string) bool { return strings.HasPrefix(f, pin) || strings.HasSuffix(f, pin) }) {
			return pin
		}
	}
}

// holds reports whether door i's view holds card c.
func (p fleetPlan) holds(i int, c fleetCard) bool { return slices.Contains(p.groups(i), c.group) }

// fleetFigures are what a fleet run measured.
type fleetFigures struct {
	Doors            int     `json:"doors"`
	StartSeconds     float64 `json:"start_seconds"`    // doors started, approved, grouped, current
	EnrolSeconds     float64 `json:"enrol_seconds"`    // cards with PINs → every affected door has them
	EnrolCards       int     `json:"enrol_cards"`      // cards enrolled
	EnrolViewCards   int     `json:"enrol_view_cards"` // card copies over all doors' views
	RevokeDoors      int     `json:"revoke_doors"`     // doors that applied each revocation
	RevokeRounds     int     `json:"revoke_rounds"`
	RevokeP50ms      float64 `json:"revoke_p50_ms"`
	RevokeP99ms      float64 `json:"revoke_p99_ms"`
	RevokeMaxms      float64 `json:"revoke_max_ms"`
	HerdSyncSeconds  float64 `json:"herd_sync_seconds"`   // broker restart → every door applied the change made while it was down
	HerdOnlineSecs   float64 `json:"herd_online_seconds"` // … and every door online again at the site
	HerdGaveUp       int     `json:"herd_gave_up"`
	HerdDownSecs     float64 `json:"herd_down_seconds"` // the broker stopped (sessions saved) → running again
	HerdCLIMaxms     float64 `json:"herd_cli_max_ms"`   // the slowest latch door list during the herd
	EventsMade       uint64  `json:"events_made"`
	EventsPerSecond  float64 `json:"events_per_second"`   // made over the load's duration
	EventsLastSecs   float64 `json:"events_last_seconds"` // the last decision, after the load began
	EventsStored     uint64  `json:"events_stored"`
	EventsDrainSecs  float64 `json:"events_drain_seconds"` // end of the load → all collected and acknowledged
	SiteCPUPercent   float64 `json:"site_cpu_percent"`     // during the load, of one core
	BrokerCPUPercent float64 `json:"broker_cpu_percent"`
	DoorsCPUPercent  float64 `json:"doors_cpu_percent"` // the process of all the doors
	SiteRSSMiB       float64 `json:"site_rss_mib"`
	SiteLoadRSSMiB   float64 `json:"site_load_rss_mib"` // at the end of the events, before their verification reads the whole database
	SiteAnonMiB      float64 `json:"site_rss_anon_mib"` // the process's own memory
	SiteFileMiB      float64 `json:"site_rss_file_mib"` // pages of the database file it has mapped
	SiteDBMiB        float64 `json:"site_db_mib"`       // the site database file at the end
	SitePeakRSSMiB   float64 `json:"site_peak_rss_mib"`
	BrokerConns      int     `json:"broker_connections"`
	BrokerRSSMiB     float64 `json:"broker_rss_mib"`
	ChainsVerified   int     `json:"chains_verified"`
	Findings         int     `json:"findings"`
	HostRSSMiB       float64 `json:"doors_process_rss_mib"`
}

// TestFleet runs a real mosquitto, latch serve, and a fleet of doors, each
// latchd itself on emulated hardware with its own data directory, identity
// and broker login, all in this process. Doors are approved, grouped and
// cards enrolled through the latch CLI. It measures a revocation's
// application at every door, enrolment, a broker restart with every door
// reconnecting at once, and a minute of events from every door, and checks
// that nothing was lost, stored twice or left unverified. hack/fleet.sh
// runs it at size and prints the table.
func TestFleet(t *testing.T) {
	if _, err := brokertest.Mosquitto(); err != nil {
		t.Fatal(err)
	}
	plan := planFor(6, 24, 3*time.Second)
	if *fleetDoors > 0 {
		plan = planFor(*fleetDoors, *fleetCards, *fleetEvents)
	}
	f := newFleet(t, plan)
	fig := f.run()
	f.printTable(os.Stdout, fig)
	if *fleetReport != "" {
		b, _ := json.MarshalIndent(fig, "", "  ")
		if err := os.WriteFile(*fleetReport, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fleet is one fleet run.
type fleet struct {
	t      *testing.T
	plan   fleetPlan
	dir    string
	broker *brokertest.Broker
	site   *fleetSite
	doors  []*fleetDoor
	ctx    context.Context
	stderr *os.File          // the doors' operational log
	users  map[string]string // broker logins: user → password
	join   joinFile          // the site's broker and keys
}

func newFleet(t *testing.T, plan fleetPlan) *fleet {
	dir := *fleetDir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &fleet{t: t, plan: plan, dir: dir, ctx: t.Context()}
}

// logf prints a progress line.
func (f *fleet) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleet: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// step bounds how long a step of the fleet may take: it turns a hang into
// a failure that says which step, and says nothing about speed.
func (f *fleet) step(what string, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(f.ctx, d, fmt.Errorf("%s: not done within %s", what, d))
}

func (f *fleet) run() fleetFigures {
	t, p := f.t, f.plan
	fig := fleetFigures{Doors: p.doors}
	start := time.Now()
	f.startBrokerAndSite()
	f.startDoors()
	f.approve()
	fig.StartSeconds = time.Since(start).Seconds()
	f.logf("%d doors approved, grouped and current in %.1f s", p.doors, fig.StartSeconds)

	f.enrol(&fig)
	f.revocations(&fig)
	f.herd(&fig)
	f.events(&fig)

	fig.SiteRSSMiB, fig.SitePeakRSSMiB = procRSS(f.site.cmd.Process.Pid)
	m := procStatus(f.site.cmd.Process.Pid)
	fig.SiteAnonMiB, fig.SiteFileMiB = m["RssAnon:"], m["RssFile:"]
	if fi, err := os.Stat(f.site.db); err == nil {
		fig.SiteDBMiB = float64(fi.Size()) / (1 << 20)
	}
	fig.BrokerRSSMiB, _ = procRSS(f.broker.PID())
	fig.HostRSSMiB, _ = procRSS(os.Getpid())
	n, err := establishedTo(f.broker.Port())
	if err != nil {
		t.Fatal(err)
	}
	fig.BrokerConns = n
	if n != p.doors+1 {
		t.Errorf("broker connections: %d, want %d (the doors and the site)", n, p.doors+1)
	}
	return fig
}

// startBrokerAndSite starts mosquitto with a login per door and the site's
// ACL, makes the site with latch init, and starts latch serve on it.
func (f *fleet) startBrokerAndSite() {
	t, p := f.t, f.plan
	users := map[string]string{"site": randomSecret()}
	for i := range p.doors {
		users[p.doorID(i)] = randomSecret()
	}
	f.broker = brokertest.Start(t, brokertest.Config{
		Users: users, ACL: brokertest.ACL(fleetSiteID), NoDelay: true,
		// mosquitto's own default: saved every 30 minutes and when it stops.
		Persistence: true, Autosave: 30 * time.Minute,
		// The site's collector needs room for every door's event window.
		MaxQueued: 64*p.doors + 1000,
	})
	f.site = startFleetSite(t, f.dir, f.broker.URL(), users["site"])
	key, err := loadSiteKeyFile(f.site.key)
	if err != nil {
		t.Fatal(err)
	}
	f.users = users
	f.join = joinFile{Broker: f.broker.URL(), Site: fleetSiteID, TrustedKeys: map[string]string{key.kid: key.pub}}
}

// startDoors starts every door of the plan, each with its join file and
// broker login, and waits until each has announced its identity.
func (f *fleet) startDoors() {
	t, p := f.t, f.plan
	dir := filepath.Join(f.dir, "doors")
	if *fleetDoorsDir != "" {
		dir = *fleetDoorsDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.stderr, err = os.Create(filepath.Join(f.dir, "doors.log")); err != nil {
		t.Fatal(err)
	}
	// The doors stop before the broker, the site and the directories go.
	t.Cleanup(func() {
		for _, d := range f.doors {
			d.quit()
		}
		for _, d := range f.doors {
			if code := <-d.done; code != 0 {
				t.Errorf("door %s exited with %d (see %s)", d.id, code, f.stderr.Name())
			}
		}
		f.stderr.Close()
	})
	for i := range p.doors {
		id := p.doorID(i)
		j := f.join
		j.Password = f.users[id]
		path, err := fleetJoin(dir, id, j)
		if err != nil {
			t.Fatal(err)
		}
		f.doors = append(f.doors, startFleetDoor(f.ctx, path, dir, id, f.stderr))
	}
	ctx, cancel := f.step("doors announce their identity", 5*time.Minute)
	defer cancel()
	for _, d := range f.doors {
		if err := d.await(ctx, func(d *fleetDoor) bool { return d.fp != "" }); err != nil {
			t.Fatal(err)
		}
	}
}

// fleetDoorView is what the fleet reads of latch door list --json.
type fleetDoorView struct {
	ID         string    `json:"id"`
	Pending    string    `json:"pending"`
	Identity   string    `json:"identity"`
	LastSeen   time.Time `json:"last_seen"`
	AppliedSeq uint64    `json:"applied_seq"`
	ViewSeq    uint64    `json:"view_seq"`
	Current    bool      `json:"current"`
	Online     bool      `json:"online"`
}

// doorList is latch door list --json, by door id, and how long it took.
func (f *fleet) doorList(ctx context.Context) (map[string]fleetDoorView, time.Duration, error) {
	t0 := time.Now()
	out, err := f.site.cli(ctx, "", "door", "list", "--json")
	took := time.Since(t0)
	if err != nil {
		return nil, took, err
	}
	var vs []fleetDoorView
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		return nil, took, fmt.Errorf("latch door list --json: %w", err)
	}
	m := make(map[string]fleetDoorView, len(vs))
	for _, v := range vs {
		m[v.ID] = v
	}
	return m, took, nil
}

// until polls latch door list until cond holds of every door, or ctx
// ends; it returns the slowest list.
func (f *fleet) until(ctx context.Context, cond func(d *fleetDoor, v fleetDoorView) bool) (time.Duration, error) {
	var slowest time.Duration
	for {
		vs, took, err := f.doorList(ctx)
		slowest = max(slowest, took)
		if err == nil {
			missing := ""
			for _, d := range f.doors {
				if !cond(d, vs[d.id]) {
					missing = d.id
					break
				}
			}
			if missing == "" {
				return slowest, nil
			}
			err = fmt.Errorf("door %s: %+v", missing, vs[missing])
		}
		select {
		case <-ctx.Done():
			return slowest, fmt.Errorf("%w (last: %v)", context.Cause(ctx), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// parallel runs fn for 0..n-1 on a few workers: the CLI calls an admin's
// script would make, a few at a time. The first error ends it.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}

// cliWorkers is how many latch commands the fleet runs at once.
const cliWorkers = 4

// approve approves every door by the fingerprint it printed, once the
// site shows it pending, sets its groups, and waits until every door is
// online with its view applied.
func (f *fleet) approve() {
	t, p := f.t, f.plan
	ctx, cancel := f.step("approve and group the doors", 10*time.Minute)
	defer cancel()
	if _, err := f.until(ctx, func(d *fleetDoor, v fleetDoorView) bool {
		ok, _ := d.state(func(d *fleetDoor) bool { return v.Pending == d.fp })
		return ok
	}); err != nil {
		t.Fatalf("doors pending at the site: %v", err)
	}
	err := parallel(ctx, p.doors, cliWorkers, func(ctx context.Context, i int) error {
		d := f.doors[i]
		if _, err := f.site.cli(ctx, "", "door", "approve", d.id, "--fingerprint", d.fp); err != nil {
			return err
		}
		_, err := f.site.cli(ctx, "", "door", "groups", d.id, strings.Join(p.groups(i), ","))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.until(ctx, func(_ *fleetDoor, v fleetDoorView) bool { return v.Online && v.Current }); err != nil {
		t.Fatalf("doors current: %v", err)
	}
}

// enrol adds the plan's cards, each with its holder and a PIN, through the
// CLI, and measures until every door whose view holds one has applied it;
// then a few doors decide some of them.
func (f *fleet) enrol(fig *fleetFigures) {
	t, p := f.t, f.plan
	ctx, cancel := f.step("enrol the cards", 30*time.Minute)
	defer cancel()
	t0 := time.Now()
	err := parallel(ctx, p.cards, cliWorkers, func(ctx context.Context, k int) error {
		c := p.card(k)
		if _, err := f.site.cli(ctx, "", "holder", "add", c.holder); err != nil {
			return err
		}
		if _, err := f.site.cli(ctx, "", "card", "add", c.uid, "--holder", c.holder, "--doors", c.group); err != nil {
			return err
		}
		_, err := f.site.cli(ctx, c.pin+"\n", "pin", "set", c.holder, "--uid", c.uid)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.until(ctx, func(_ *fleetDoor, v fleetDoorView) bool { return v.Online && v.Current }); err != nil {
		t.Fatalf("doors current after the enrolment: %v", err)
	}
	fig.EnrolSeconds, fig.EnrolCards = time.Since(t0).Seconds(), p.cards
	for i := range p.doors {
		for k := range p.cards {
			if p.holds(i, p.card(k)) {
				fig.EnrolViewCards++
			}
		}
	}
	f.logf("%d cards with PINs enrolled and at every door that holds them (%d copies) in %.1f s", p.cards, fig.EnrolViewCards, fig.EnrolSeconds)

	// The first and the last door decide a card of theirs, with its PIN,
	// and one of another floor or lab.
	for _, i := range []int{0, p.doors - 1} {
		for k := range p.cards {
			c := p.card(k)
			want := "unknown_card"
			if p.holds(i, c) {
				want = "granted"
			}
			if k >= 12 {
				break
			}
			got, err := f.doors[i].decide(ctx, c.uid, map[bool]string{true: c.pin}[want == "granted"])
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("door %s (groups %v): card %s of %s: %s, want %s", f.doors[i].id, p.groups(i), c.uid, c.group, got, want)
			}
		}
	}
}

// revocationCard is the UID of the r-th card that opens every door, kept
// for the revocations.
func revocationCard(r int) string { return fmt.Sprintf("0B%06X", r) }

// changeResult is what latch revoke --json answers.
type fleetChange struct {
	Seq   uint64            `json:"seq"`
	Doors map[string]uint64 `json:"doors"`
}

// revoke revokes uid through the CLI and returns each door's view seq that
// holds the revocation.
func (f *fleet) revoke(ctx context.Context, uid string) (fleetChange, error) {
	out, err := f.site.cli(ctx, "", "revoke", "--uid", uid, "--reason", "lost", "--json")
	if err != nil {
		return fleetChange{}, err
	}
	var c fleetChange
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		return c, fmt.Errorf("latch revoke --json: %w: %q", err, out)
	}
	return c, nil
}

// revocations revokes a card that every door holds, a few times, and
// measures from the command to its application at each door, by the
// door's record of it (the same clock).
func (f *fleet) revocations(fig *fleetFigures) {
	t, p := f.t, f.plan
	ctx, cancel := f.step("revocations", 10*time.Minute)
	defer cancel()
	for r := range p.revocations + 1 { // the last one is the broker restart's
		if _, err := f.site.cli(ctx, "", "card", "add", revocationCard(r), "--holder", p.card(0).holder, "--doors", "all"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.until(ctx, func(_ *fleetDoor, v fleetDoorView) bool { return v.Online && v.Current }); err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for r := range p.revocations {
		t0 := time.Now()
		c, err := f.revoke(ctx, revocationCard(r))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Doors) != p.doors {
			t.Fatalf("revocation %d: %d doors hold the card, want %d", r, len(c.Doors), p.doors)
		}
		worst := time.Duration(0)
		for _, d := range f.doors {
			at, err := d.awaitApplied(ctx, c.Doors[d.id])
			if err != nil {
				t.Fatal(err)
			}
			lat = append(lat, at.Sub(t0))
			worst = max(worst, at.Sub(t0))
		}
		f.logf("revocation %d applied at %d doors; the last after %v", r, len(c.Doors), worst.Round(time.Millisecond))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fig.RevokeDoors, fig.RevokeRounds = p.doors, p.revocations
	fig.RevokeP50ms, fig.RevokeP99ms, fig.RevokeMaxms = ms(lat[len(lat)/2]), ms(lat[min(len(lat)-1, len(lat)*99/100)]), ms(lat[len(lat)-1])
	for _, i := range []int{0, p.doors / 2, p.doors - 1} {
		if got, err := f.doors[i].decide(ctx, revocationCard(0), ""); err != nil || got != "revoked" {
			t.Fatalf("door %s: the revoked card: %s %v", f.doors[i].id, got, err)
		}
	}
}

// herd stops the broker, revokes a card meanwhile, and starts the broker
// again: every door reconnects at once. It measures until every door
// applied the revocation, and until the site shows each online again, and
// how slow the CLI was meanwhile.
func (f *fleet) herd(fig *fleetFigures) {
	t, p := f.t, f.plan
	ctx, cancel := f.step("broker restart", 10*time.Minute)
	defer cancel()
	down := time.Now()
	f.broker.Stop()
	c, err := f.revoke(ctx, revocationCard(p.revocations))
	if err != nil {
		t.Fatal(err)
	}
	f.broker.Restart()
	t1 := time.Now()
	fig.HerdDownSecs = t1.Sub(down).Seconds()
	f.logf("broker restarted; %d doors reconnect", p.doors)
	var synced atomic.Int64
	done := make(chan error, 1)
	go func() {
		var worst time.Duration
		for _, d := range f.doors {
			at, err := d.awaitApplied(ctx, c.Doors[d.id])
			if err != nil {
				done <- err
				return
			}
			worst = max(worst, at.Sub(t1))
		}
		synced.Store(int64(worst))
		done <- nil
	}()
	slowest, err := f.until(ctx, func(_ *fleetDoor, v fleetDoorView) bool { return v.Online && v.Current && v.LastSeen.After(t1) })
	if err != nil {
		t.Fatalf("doors back online: %v", err)
	}
	fig.HerdOnlineSecs, fig.HerdCLIMaxms = time.Since(t1).Seconds(), float64(slowest.Microseconds())/1000
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fig.HerdSyncSeconds = time.Duration(synced.Load()).Seconds()
	for _, d := range f.doors {
		select {
		case code := <-d.done:
			d.done <- code
			fig.HerdGaveUp++
		default:
		}
	}
	f.logf("every door applied the change made while the broker was down %.1f s after its restart; all online at the site after %.1f s", fig.HerdSyncSeconds, fig.HerdOnlineSecs)
}

// eventsUID is a card no door knows: each tap of it is one event.
const eventsUID = "0C000001"

// events has every door decide a card once a second for the plan's
// duration, then waits until the site stored and acknowledged every event,
// and checks the chains and the findings.
func (f *fleet) events(fig *fleetFigures) {
	t, p := f.t, f.plan
	ctx, cancel := f.step("events", p.events+10*time.Minute)
	defer cancel()
	before := make([]uint64, len(f.doors))
	for i, d := range f.doors {
		d.state(func(d *fleetDoor) bool { before[i] = d.seq; return true })
	}
	pid := f.site.cmd.Process.Pid
	cpu0, bcpu0, dcpu0, t0 := procCPU(pid), procCPU(f.broker.PID()), procCPU(os.Getpid()), time.Now()
	end := t0.Add(p.events)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for _, d := range f.doors {
		wg.Go(func() {
			next := t0.Add(time.Duration(rand.Int64N(int64(time.Second))))
			for next.Before(end) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				if got, err := d.decide(ctx, eventsUID, ""); err != nil || got != "unknown_card" {
					refused.Add(1)
				}
				next = next.Add(time.Second)
			}
		})
	}
	wg.Wait()
	took := time.Since(t0)
	cpu := procCPU(pid) - cpu0
	fig.SiteCPUPercent = 100 * cpu.Seconds() / took.Seconds()
	fig.SiteLoadRSSMiB, _ = procRSS(pid)
	fig.BrokerCPUPercent = 100 * (procCPU(f.broker.PID()) - bcpu0).Seconds() / took.Seconds()
	fig.DoorsCPUPercent = 100 * (procCPU(os.Getpid()) - dcpu0).Seconds() / took.Seconds()
	if n := refused.Load(); n > 0 {
		t.Errorf("%d taps were not decided as unknown cards", n)
	}
	var heads = make(map[string]uint64, len(f.doors))
	for i, d := range f.doors {
		d.state(func(d *fleetDoor) bool { heads[d.id] = d.seq; return true })
		fig.EventsMade += heads[d.id] - before[i]
	}
	fig.EventsPerSecond, fig.EventsLastSecs = float64(fig.EventsMade)/p.events.Seconds(), took.Seconds()
	f.logf("%d events in %s (%.0f/s), the last at %.1f s; the site used %.0f%% of a core", fig.EventsMade, p.events, fig.EventsPerSecond, took.Seconds(), fig.SiteCPUPercent)

	// Everything collected: each door's stored chain reaches its head and
	// verifies; every outbox is empty.
	var vs []struct {
		Door       string `json:"door"`
		OK         bool   `json:"ok"`
		Contiguous uint64 `json:"contiguous"`
		Problem    string `json:"problem"`
		Log        string `json:"log"` // "changes": the site's change log, not a door
	}
	for {
		out, err := f.site.cli(ctx, "", "audit", "verify", "--json")
		if err != nil && out == "" {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &vs); err != nil {
			t.Fatalf("latch audit verify --json: %v", err)
		}
		doors := 0
		all := true
		for _, v := range vs {
			if !v.OK {
				t.Fatalf("audit verify: %s%s: %s", v.Door, v.Log, v.Problem)
			}
			if v.Log != "" {
				continue
			}
			doors++
			all = all && v.Contiguous == heads[v.Door]
		}
		all = all && doors == len(f.doors)
		if all {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("events not all collected: %v", context.Cause(ctx))
		case <-time.After(time.Second):
		}
	}
	for _, d := range f.doors {
		for {
			n, err := d.outboxNow(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("door %s: %d events not acknowledged", d.id, n)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	fig.EventsDrainSecs = time.Since(t0.Add(took)).Seconds()
	fig.ChainsVerified = len(vs)
	for _, v := range vs {
		fig.EventsStored += v.Contiguous
	}
	out, err := f.site.cli(ctx, "", "audit", "findings", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var findings []json.RawMessage
	if err := json.Unmarshal([]byte(out), &findings); err != nil {
		t.Fatalf("latch audit findings --json: %v: %q", err, out)
	}
	fig.Findings = len(findings)
	if len(findings) > 0 {
		t.Errorf("findings: %s", out)
	}
}

// printTable prints the figures as one table.
func (f *fleet) printTable(w io.Writer, fig fleetFigures) {
	row := func(what, value string) { fmt.Fprintf(w, "| %-62s | %s |\n", what, value) }
	fmt.Fprintf(w, "\nlatch fleet: %d doors, %d cards (%d with PINs), on one machine\n\n", fig.Doors, fig.EnrolCards+f.plan.revocations+1, fig.EnrolCards)
	fmt.Fprintf(w, "| %-62s | %s |\n|%s|---|\n", "measure", "figure", strings.Repeat("-", 64))
	row("doors started, approved, grouped, current", fmt.Sprintf("%.1f s", fig.StartSeconds))
	row(fmt.Sprintf("%d cards + PINs enrolled → every affected door has them", fig.EnrolCards), fmt.Sprintf("%.1f s (%d card copies)", fig.EnrolSeconds, fig.EnrolViewCards))
	row(fmt.Sprintf("revocation → applied at each of %d doors (%d rounds)", fig.RevokeDoors, fig.RevokeRounds),
		fmt.Sprintf("p50 %.0f ms, p99 %.0f ms, max %.0f ms", fig.RevokeP50ms, fig.RevokeP99ms, fig.RevokeMaxms))
	row("broker restart → every door applied the change made meanwhile", fmt.Sprintf("%.1f s (the broker was down %.1f s)", fig.HerdSyncSeconds, fig.HerdDownSecs))
	row("broker restart → every door online again at the site", fmt.Sprintf("%.1f s; %d doors gave up", fig.HerdOnlineSecs, fig.HerdGaveUp))
	row("slowest latch door list during the restart", fmt.Sprintf("%.0f ms", fig.HerdCLIMaxms))
	row(fmt.Sprintf("events, every door 1/s for %s", f.plan.events), fmt.Sprintf("%d made, %.0f/s; the last decided at %.1f s", fig.EventsMade, fig.EventsPerSecond, fig.EventsLastSecs))
	row("… stored once each, chains verified, acknowledged", fmt.Sprintf("%d stored, %d chains ok, %d findings, drained %.1f s after", fig.EventsStored, fig.ChainsVerified, fig.Findings, fig.EventsDrainSecs))
	row("CPU during the events: site; broker; all doors", fmt.Sprintf("%.0f%%; %.0f%%; %.0f%% of one core", fig.SiteCPUPercent, fig.BrokerCPUPercent, fig.DoorsCPUPercent))
	row("site RSS at the end of the events", fmt.Sprintf("%.0f MiB", fig.SiteLoadRSSMiB))
	row("site RSS at the end (peak): own memory + database pages mapped", fmt.Sprintf("%.0f MiB (%.0f MiB): %.0f + %.0f MiB", fig.SiteRSSMiB, fig.SitePeakRSSMiB, fig.SiteAnonMiB, fig.SiteFileMiB))
	row("site database file", fmt.Sprintf("%.0f MiB, %.0f bytes per stored event", fig.SiteDBMiB, fig.SiteDBMiB*(1<<20)/float64(max(1, fig.EventsStored))))
	row("broker connections; broker RSS", fmt.Sprintf("%d; %.0f MiB", fig.BrokerConns, fig.BrokerRSSMiB))
	row("the doors' process RSS (all doors)", fmt.Sprintf("%.0f MiB", fig.HostRSSMiB))
	fmt.Fprintln(w)
}
