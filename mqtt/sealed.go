package mqtt

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/latchdoor/latch/store"
)

// A door's view of the allowlist travels sealed: the site signs the
// message as any other (the envelope of Signer.Seal), and the message's
// body, the part with card UIDs and PIN hashes, is an HPKE ciphertext
// (SealTo) that only the door's identity opens. The header stays in clear
// so that a door refuses what is not for it before it opens anything, and
// the HPKE info binds the body to that header: a body moved under another
// header, seq or chunk does not open.

// sealInfoContext starts the HPKE info of every sealed body.
const sealInfoContext = "latch sealed v2\x00"

var fingerprintRE = regexp.MustCompile(`^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$`)

// sealing is the clear part of a sealed message besides its header.
type sealing struct {
	Door string `json:"door"` // the door it is sealed to
	To   string `json:"to"`   // the fingerprint of that door's identity
	Body string `json:"body"` // HPKE ciphertext of the body, base64
}

func (s *sealing) sealed() *sealing { return s }

func (s *sealing) check() error {
	if err := CheckID("door", s.Door); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !fingerprintRE.MatchString(s.To) {
		return fmt.Errorf("%w: sealed to %q, not a door fingerprint", ErrMalformed, s.To)
	}
	if s.Body == "" {
		return fmt.Errorf("%w: no sealed body (seal it with Signer.SealFor)", ErrMalformed)
	}
	return nil
}

// sealedMsg is a signed message whose body is sealed to one door: *Delta
// and *SnapshotChunk.
type sealedMsg interface {
	Signed
	sealed() *sealing
	// plain is the body to seal.
	plain() any
	// openBody decodes the opened body strictly into the message.
	openBody(pt []byte) error
	// part tells apart sealed bodies under one header (a chunk's index).
	part() uint64
}

// sealInfo is the HPKE info of a sealed body: the context, the kind, the
// site, the door, the fingerprint it is sealed to (each preceded by its
// length), the seq, the part and issued_at in nanoseconds (8 bytes each,
// big-endian).
func sealInfo(m sealedMsg) []byte {
	h, s := m.Head(), m.sealed()
	b := []byte(sealInfoContext)
	for _, f := range []string{string(m.Kind()), h.Site, s.Door, s.To} {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, m.part())
	return binary.BigEndian.AppendUint64(b, uint64(h.IssuedAt.UnixNano()))
}

// SealFor seals the message's body to the door identity to and signs the
// whole message (see Seal). The caller sets the header (Site, Seq,
// IssuedAt) and the door the message is for (Door); SealFor sets To.
func (s *Signer) SealFor(to PublicIdentity, m sealedMsg) ([]byte, error) {
	k := m.Kind()
	h := m.Head()
	h.V, h.Type = Version, k
	sl := m.sealed()
	sl.To = to.Fingerprint()
	pt, err := json.Marshal(m.plain())
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal %s for %s: %w", k, sl.Door, err)
	}
	ct, err := SealTo(to, sealInfo(m), pt)
	if err != nil {
		return nil, fmt.Errorf("mqtt: seal %s for %s: %w", k, sl.Door, err)
	}
	sl.Body = base64.StdEncoding.EncodeToString(ct)
	return s.Seal(m)
}

// openSealed opens the body of a verified sealed message with the door's
// identity.
func openSealed(m sealedMsg, door string, id *Identity, fp string) error {
	sl := m.sealed()
	if sl.Door != door {
		return fmt.Errorf("%w: sealed for door %q, this is %q", ErrWrongDoor, sl.Door, door)
	}
	if sl.To != fp {
		return fmt.Errorf("%w: sealed to %s, this door is %s (a key rotation the site has not caught up with?)", ErrNotForMe, sl.To, fp)
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(sl.Body)
	if err != nil {
		return fmt.Errorf("%w: sealed body: %w", ErrMalformed, err)
	}
	pt, err := id.Open(sealInfo(m), ct)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotForMe, err)
	}
	if err := m.openBody(pt); err != nil {
		return fmt.Errorf("%w: sealed body: %w", ErrMalformed, err)
	}
	return nil
}

// NewDelta returns the delta moving door's view to seq, to seal with
// Signer.SealFor.
func NewDelta(site, door string, seq uint64, issuedAt time.Time, ops []store.Op) *Delta {
	return &Delta{Header: Header{Site: site, Seq: seq, IssuedAt: issuedAt}, sealing: sealing{Door: door}, Ops: ops}
}
