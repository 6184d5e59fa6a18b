package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchdoor/latch/store"
)

// keysState is the store state key under which a door keeps the site keys
// it learnt from rotations (Verifier.MarshalKeys).
const keysState = "site/keys"

// openKeyChain verifies the rotations of the retained key chain that are
// new, in order (each may be signed by the key the one before named), and
// applies them to the verifier at once: it runs in the paho handler, which
// decodes messages in the order they came, so a message signed by the new
// key right after the chain is verified with it. Run records what changed
// (onKeys).
func (c *Client) openKeyChain(b []byte) ([]*KeyRotation, error) {
	kc, err := DecodeKeyChain(b, c.o.Site)
	if err != nil {
		return nil, err
	}
	var applied []*KeyRotation
	for _, link := range kc.Rotations {
		if seq := rotationSeq(link); seq != 0 && seq <= c.v.rotationSeq() {
			continue
		}
		m, kid, err := c.v.Open(link, KindKeyRotation)
		if errors.Is(err, ErrUnknownKey) {
			// Signed by a key this door never trusted: a link from before
			// the key it was configured with. The links after it may be
			// signed by a key it trusts.
			continue
		}
		if err != nil {
			return applied, fmt.Errorf("key rotation: %w", err)
		}
		r := m.(*KeyRotation)
		ok, err := c.v.Rotate(r, kid)
		if err != nil {
			return applied, err
		}
		if ok {
			applied = append(applied, r)
		}
	}
	return applied, nil
}

// rotationSeq reads the seq of a signed rotation without trusting it, to
// skip the ones already applied (whose signer may be retired by now).
func rotationSeq(link json.RawMessage) uint64 {
	var env struct {
		Payload struct {
			Seq uint64 `json:"seq"`
		} `json:"payload"`
	}
	if json.Unmarshal(link, &env) != nil {
		return 0
	}
	return env.Payload.Seq
}

// onKeys records the rotations openKeyChain applied: an audit event each,
// and the keys in the store.
func (c *Client) onKeys(in inbound) {
	for _, r := range in.keys {
		c.event(store.ReasonKeyRotated, fmt.Sprintf("site key rotation %d: key %s trusted; key %s refused from %s",
			r.Seq, r.Kid, r.Retires, r.RetireAt.UTC().Format(time.RFC3339)))
	}
	if len(in.keys) > 0 {
		c.saveKeys()
	}
}

// retireKeys retires the site keys whose end has come by the door's best
// time (its clock, or the clock floor when that is later).
func (c *Client) retireKeys() {
	kids := c.v.RetireDue(c.fresh.floorNow())
	if len(kids) == 0 {
		return
	}
	c.event(store.ReasonKeyRotated, "site key "+strings.Join(kids, ", ")+" retired: refused from now on")
	c.saveKeys()
}

// saveKeys writes the trusted keys to the store.
func (c *Client) saveKeys() {
	b, err := c.v.MarshalKeys()
	if err == nil {
		err = c.st.PutState(keysState, b)
	}
	if err != nil {
		c.storeErr("save site keys", err)
	}
	c.update(func(s *Stats) { s.SiteKeys = c.v.KeyIDs() })
}

// loadKeys merges the keys learnt from rotations into the configured ones.
func (c *Client) loadKeys() error {
	b, err := c.st.State(keysState)
	if errors.Is(err, store.ErrNotFound) || (err == nil && b == nil) {
		c.update(func(s *Stats) { s.SiteKeys = c.v.KeyIDs() })
		return nil
	}
	if err != nil {
		return fmt.Errorf("mqtt: load site keys: %w", err)
	}
	if err := c.v.LoadKeys(b); err != nil {
		return err
	}
	c.update(func(s *Stats) { s.SiteKeys = c.v.KeyIDs() })
	return nil
}
