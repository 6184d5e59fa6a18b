package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/devbroker"
	mqttsite "github.com/latchdoor/latch/mqtt/site"
	"github.com/latchdoor/latch/store"
	sitestore "github.com/latchdoor/latch/store/site"
)

// siteDBFile is the standalone simulator's site database, in its data
// directory beside the door's.
const siteDBFile = "site.db"

// simBy is who the site database records as making the simulator's
// changes to the allowlist.
const simBy = "latchd -sim"

// siteAdmin carries out the site commands typed at the simulator's
// prompt: unlock, lockdown, revoke and reinstate.
type siteAdmin func(ctx context.Context, c simCmd) error

// localSite is the site the standalone simulator runs in its own process:
// the production site (package mqtt/site) on site.db in the data
// directory, signing with the demo site key, on the simulator's broker.
// The door gets its allowlist from it as a real door does, by its sync,
// and the site collects and acknowledges the door's events.
type localSite struct {
	broker *devbroker.Broker // the embedded broker, unless -mqtt names one
	url    string            // the broker's URL
	db     *sitestore.DB
	site   *mqttsite.Site
	door   string
	key    string // the site's public key, base64

	stop context.CancelFunc
	done chan error
}

// openLocalSite starts the embedded broker on o.brokerAddr unless
// o.mqttURL names a broker, opens the site database in o.dataDir, records
// door with its identity id as approved, and makes the site; a database
// without an allowlist yet gets the demo holders and cards. It prints
// what it did. Start runs the site; close undoes it all.
func openLocalSite(o simOptions, door string, id mqtt.PublicIdentity, out *printer, log *slog.Logger) (s *localSite, err error) {
	key, _, err := loadOrCreateSiteKey(o.dataDir)
	if err != nil {
		return nil, err
	}
	signer, err := mqtt.NewSigner(simKeyID, key)
	if err != nil {
		return nil, fmt.Errorf("demo site: %w", err)
	}
	s = &localSite{url: o.mqttURL, door: door, key: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	if s.url == "" {
		if s.broker, err = devbroker.Start(o.brokerAddr, log); err != nil {
			return nil, err
		}
		s.url = s.broker.URL()
		out.line("latchd: MQTT broker listening on %s", s.broker.Addr())
	}
	if s.db, err = sitestore.Open(filepath.Join(o.dataDir, siteDBFile), nil); err != nil {
		return nil, fmt.Errorf("demo site: %w", err)
	}
	// The door runs in this process: its identity is known here, so it
	// is recorded as approved, as an installer who read it off a door
	// does, instead of waiting for an admin to approve what it announces.
	if err := mqttsite.Provision(s.db, door, &id, nil); err != nil {
		return nil, fmt.Errorf("demo site: %w", err)
	}
	s.site, err = mqttsite.New(mqttsite.Options{DB: s.db, Broker: s.url, Site: demoSite, Signer: signer, Logger: log,
		// Keeps the door's allowlist fresh (mqtt.stale_after).
		HeartbeatEvery: time.Hour})
	if err != nil {
		return nil, fmt.Errorf("demo site: %w", err)
	}
	seq, err := s.db.ACLSeq()
	if err != nil {
		return nil, fmt.Errorf("demo site: %w", err)
	}
	if seq == 0 {
		if err := seedDemo(s.site); err != nil {
			return nil, err
		}
		out.line("latchd: new demo site %q, door %q, in %s", demoSite, door, o.dataDir)
	}
	out.line("latchd: site %q runs here on %s with door %q approved, site key %s = %s", demoSite, siteDBFile, door, simKeyID, s.key)
	out.line("latchd: demo cards: %s (PIN %s), %s (revoked)", demoValidUID, demoValidPIN, demoRevoked)
	return s, nil
}

// seedDemo commits the demo holders and cards to the site's allowlist.
func seedDemo(site *mqttsite.Site) error {
	valid, _ := parseUID(demoValidUID)
	revoked, _ := parseUID(demoRevoked)
	// The rules a PIN is checked against concern the card it is for, and
	// both cards pass them: one hash serves both.
	hash, err := store.HashPIN([]byte(demoValidPIN), valid, store.DefaultPINParams)
	if err != nil {
		return fmt.Errorf("demo site: %w", err)
	}
	_, err = site.CommitBy(simBy,
		store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "alice", Name: "Alice Demo"}},
		store.Op{Kind: store.OpUpsertHolder, Holder: &store.Holder{ID: "bob", Name: "Bob Demo"}},
		store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: valid, HolderID: "alice", HolderName: "Alice Demo", PINHash: hash, Doors: []string{demoDoor}}},
		store.Op{Kind: store.OpUpsertCard, Card: &store.Card{UID: revoked, HolderID: "bob", HolderName: "Bob Demo", PINHash: hash, Doors: []string{demoDoor}}},
		store.Op{Kind: store.OpRevokeCard, UID: revoked, Reason: "reported lost"},
	)
	if err != nil {
		return fmt.Errorf("demo site: seed the demo cards: %w", err)
	}
	return nil
}

// start runs the site until close.
func (s *localSite) start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	s.done = make(chan error, 1)
	go func() { s.done <- s.site.Run(ctx) }()
}

// close stops the site, closes its database and stops the embedded
// broker.
func (s *localSite) close() error {
	var err error
	if s.stop != nil {
		s.stop()
		err = <-s.done
	}
	if s.db != nil {
		if cerr := s.db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("demo site: %w", cerr))
		}
	}
	if s.broker != nil {
		err = errors.Join(err, s.broker.Close())
	}
	return err
}

// connected waits, until timeout fires, for the site to be connected
// and subscribed: a door that starts after it loses no event to a site
// not listening yet.
func (s *localSite) connected(ctx context.Context, timeout <-chan time.Time) error {
	if err := waitFor(ctx, timeout, s.site.Updated, func() bool { return s.site.Stats().Connected }); err != nil {
		return fmt.Errorf("the demo site is not connected to the broker: %w", err)
	}
	return nil
}

// applied waits, until timeout fires, for the door d to connect,
// publishes the site's heartbeat, and waits for d's store to have applied
// the view the site has for the door: from then on a tap is decided on
// the site's allowlist.
func (s *localSite) applied(ctx context.Context, d *daemon, timeout <-chan time.Time) error {
	// The door asks for its view as it connects; the heartbeat tells it
	// the site is there (its allowlist is fresh) and what it lacks. It
	// goes out once the door is there rather than as soon as the site
	// connects: paho resends what is published while it resumes its
	// session, from another goroutine (eclipse-paho/paho.mqtt.golang#703).
	if err := waitFor(ctx, timeout, d.client.Updated, func() bool { return d.client.Stats().Connected }); err != nil {
		return fmt.Errorf("the door is not connected to the broker: %w", err)
	}
	if err := s.site.Heartbeat(ctx); err != nil {
		return err
	}
	done := func() bool {
		seq, hash := s.site.Head(s.door)
		ss, err := d.st.SyncState()
		return err == nil && ss.AppliedSeq == seq && ss.SnapshotHash == hash
	}
	if err := waitFor(ctx, timeout, d.client.Updated, done); err != nil {
		seq, _ := s.site.Head(s.door)
		return fmt.Errorf("the door has not applied the site's allowlist (seq %d): %w", seq, err)
	}
	return nil
}

// admin carries out the prompt's site commands through the site, as an
// admin at the site gives them, for the door d.
func (s *localSite) admin(d *daemon) siteAdmin {
	return func(ctx context.Context, c simCmd) error {
		// Commands are not kept for a door that has not subscribed yet:
		// wait for it, as an admin waits for a door online.
		if err := waitConnected(ctx, d); err != nil {
			return err
		}
		var err error
		switch c.op {
		case opUnlock:
			_, err = s.site.Command(ctx, s.door, mqtt.Command{Action: mqtt.ActionUnlock, DurationMS: c.dur.Milliseconds()})
		case opLockdown:
			on := c.on
			_, err = s.site.Command(ctx, s.door, mqtt.Command{Action: mqtt.ActionLockdown, On: &on})
		case opRevoke:
			_, err = s.site.PublishBy(ctx, simBy, store.Op{Kind: store.OpRevokeCard, UID: c.uid, Reason: "revoked from the simulator"})
		case opReinstate:
			_, err = s.site.PublishBy(ctx, simBy, store.Op{Kind: store.OpReinstateCard, UID: c.uid})
		default:
			err = fmt.Errorf("command %d is not the site's", c.op)
		}
		return err
	}
}
