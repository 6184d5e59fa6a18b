package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/latchdoor/latch/store"
)

// keysState is the store state key under which a door keeps the site keys
// it learnt from rotations (Verifier.MarshalKeys).
const keysState = "site/keys"

// keyLink is one signed rotation of a key chain, not verified yet.
type keyLink = json.RawMessage

// openKeyChain decodes the retained key chain; Run verifies its links in
// order, since each may be signed by the key the one before it named.
func (c *Client) openKeyChain(b []byte) ([]keyLink, error) {
	kc, err := DecodeKeyChain(b, c.o.Site)
	if err != nil {
		return nil, err
	}
	return kc.Rotations, nil
}

// rotationSeq reads the seq of a signed rotation without trusting it, to
// skip the ones already applied (whose signer may be retired by now).
func rotationSeq(link keyLink) uint64 {
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

// onKeys applies the rotations of a key chain that are new, in order.
func (c *Client) onKeys(in inbound) {
	changed := false
	for _, link := range in.keys {
		if seq := rotationSeq(link); seq != 0 && seq <= c.v.rotationSeq() {
			continue
		}
		m, kid, err := c.v.Open(link, KindKeyRotation)
		if err != nil {
			c.reject(in, fmt.Errorf("key rotation: %w", err))
			return
		}
		r := m.(*KeyRotation)
		ok, err := c.v.Rotate(r, kid)
		if err != nil {
			c.reject(in, err)
			return
		}
		if ok {
			changed = true
			c.event(store.ReasonKeyRotated, fmt.Sprintf("site key rotation %d: key %s trusted; key %s refused from %s",
				r.Seq, r.Kid, r.Retires, r.RetireAt.UTC().Format("2006-01-02T15:04:05Z")))
		}
	}
	if changed {
		c.saveKeys()
	}
}

// retireKeys retires the site keys whose end has come by the door's best
// time (its clock, or the clock floor when that is later).
func (c *Client) retireKeys() {
	kids := c.v.RetireDue(c.floorNow())
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
