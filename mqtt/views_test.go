package mqtt_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/latchdoor/latch/mqtt"
	"github.com/latchdoor/latch/mqtt/sitetest"
	"github.com/latchdoor/latch/store"
)

// pinHash returns a PIN hash in the store's format, unique to n (the
// argon2id work is not what these tests are about).
func pinHash(n uint32) string {
	salt := bytes.Repeat([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0x5a}, 4)
	sum := bytes.Repeat([]byte{byte(n >> 16), byte(n >> 8), byte(n), 0xa5}, 8)
	enc := base64.RawStdEncoding
	return "$argon2id$v=19$m=32768,t=2,p=1$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(sum)
}

func cardWithPIN(n uint32, doors ...string) store.Op {
	op := card(n, doors...)
	op.Card.PINHash = pinHash(n)
	op.Card.Flags = store.Flags{}
	return op
}

// recorder keeps every message published under a topic filter, as a
// broker operator could.
type recorder struct {
	mu   sync.Mutex
	msgs []paho.Message
	seen chan string
}

// record subscribes to filter as the site's broker user.
func record(t testing.TB, e *env, filter string) *recorder {
	t.Helper()
	r := &recorder{seen: make(chan string, 1<<16)}
	o := paho.NewClientOptions().AddBroker(e.broker.URL()).SetClientID("recorder").
		SetUsername("site").SetPassword(users["site"]).SetAutoReconnect(false)
	pc := paho.NewClient(o)
	if tok := pc.Connect(); !tok.WaitTimeout(hang) || tok.Error() != nil {
		t.Fatalf("recorder: connect: %v", tok.Error())
	}
	tok := pc.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		select {
		case r.seen <- m.Topic():
		default:
		}
	})
	if !tok.WaitTimeout(hang) || tok.Error() != nil {
		t.Fatalf("recorder: subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(0) })
	return r
}

// sync publishes a marker through the site's connection and waits until
// the recorder has it: everything the site published before is recorded.
func (r *recorder) sync(t testing.TB, e *env) {
	t.Helper()
	topic := mqtt.TopicsFor(site).Root + "marker"
	if err := e.site.PublishRaw(context.Background(), topic, []byte("marker"), false); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(hang)
	for {
		select {
		case got := <-r.seen:
			if got == topic {
				return
			}
		case <-deadline:
			t.Fatal("recorder: the marker never came")
		}
	}
}

// Against a real broker, a recorder of every message under latch/v2/
// watches 1,000 cards with PINs enrolled across two doors of different
// groups (one door online during enrolment and so fed deltas, the other
// joining after and fed a snapshot), then a revocation and a PIN change.
// No card UID and no PIN hash appears in clear in any message, and each
// door's store holds exactly its own view.
func TestViewsOnTheWire(t *testing.T) {
	e := newEnv(t, envConfig{site: func(o *sitetest.Options) {
		o.DoorGroups = map[string][]string{"front": {"lobby"}, "back": {"lab"}}
	}})
	ctx := context.Background()
	rec := record(t, e, "latch/v2/#")
	front := e.newRig("front", "", nil).start()
	front.waitConnected()

	const cards = 1000
	groups := [][]string{{"lobby"}, {"lab"}, {"lobby", "lab"}}
	for batch := range uint32(cards / 100) {
		var ops []store.Op
		for n := batch * 100; n < (batch+1)*100; n++ {
			ops = append(ops, cardWithPIN(n, groups[n%3]...))
		}
		if _, err := e.site.Publish(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	e.waitSynced(front)
	back := e.newRig("back", "", nil).start()
	e.waitSynced(back)
	changed := cardWithPIN(5, "lobby", "lab")
	changed.Card.PINHash = pinHash(5 + 1<<20)
	if _, err := e.site.Publish(ctx, revoke(2), changed); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(front)
	e.waitSynced(back)
	rec.sync(t, e)

	rec.mu.Lock()
	msgs := rec.msgs
	rec.mu.Unlock()
	var wire bytes.Buffer
	kinds := map[string]int{}
	for _, m := range msgs {
		wire.WriteString(m.Topic())
		wire.WriteByte(0)
		wire.Write(m.Payload())
		wire.WriteByte(0)
		kinds[m.Topic()[strings.LastIndex(m.Topic(), "/")+1:]]++
	}
	t.Logf("recorded %d messages, %d bytes: %v", len(msgs), wire.Len(), kinds)
	if kinds["acl"] == 0 {
		t.Fatal("the recorder saw no allowlist message: the test shows nothing")
	}
	secrets := [][]byte{[]byte("$argon2id$"), []byte(pinHash(5 + 1<<20))}
	for n := range uint32(cards) {
		u := uid(n)
		secrets = append(secrets, u, []byte(hex.EncodeToString(u)), []byte(strings.ToUpper(hex.EncodeToString(u))),
			[]byte(base64.StdEncoding.EncodeToString(u)), []byte(pinHash(n)))
	}
	for _, s := range secrets {
		if i := bytes.Index(wire.Bytes(), s); i >= 0 {
			start := max(0, i-80)
			t.Fatalf("%q in clear on the wire: …%q…", s, wire.Bytes()[start:min(wire.Len(), i+80)])
		}
	}

	// Each door holds its view, and only it.
	for _, r := range []*rig{front, back} {
		snap, err := r.st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		view := e.site.View(r.name)
		if store.HashSnapshot(snap) != store.HashSnapshot(view) || len(snap.Cards) != len(view.Cards) {
			t.Fatalf("%s holds %d cards, its view %d", r.name, len(snap.Cards), len(view.Cards))
		}
		want := 0
		for n := range uint32(cards) {
			in := n%3 == 2 || (r.name == "front") == (n%3 == 0)
			_, err := r.st.Card(uid(n))
			switch {
			case in && err != nil:
				t.Fatalf("%s lacks card %d: %v", r.name, n, err)
			case !in && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("%s holds card %d of another group (%v)", r.name, n, err)
			}
			if in {
				want++
			}
		}
		if len(snap.Cards) != want {
			t.Fatalf("%s holds %d cards, want %d", r.name, len(snap.Cards), want)
		}
		if d := decide(t, r.st, r.name, 2); d.Reason != store.ReasonRevoked {
			t.Fatalf("%s: card 2 (in both views) after its revocation: %+v", r.name, d)
		}
		c, err := r.st.Card(uid(5))
		if err != nil || c.PINHash != pinHash(5+1<<20) {
			t.Fatalf("%s: card 5's new PIN: %v %v", r.name, c.PINHash, err)
		}
	}
}
