package mqtt

import (
	"crypto/ed25519"
	"time"
)

// PublicKey returns the trusted key kid and when it ends (zero: no
// successor has been named), or why it is not trusted: for checking a
// site signature outside the envelope (a review's evidence file) with the
// keys a Verifier learnt from its configuration and the key chain.
func (v *Verifier) PublicKey(kid string) (ed25519.PublicKey, time.Time, error) { return v.key(kid) }
