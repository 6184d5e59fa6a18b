package mqtt

import (
	"encoding/base64"
	"time"
)

// offlineStatus is the last will, and what a clean shutdown publishes.
func (c *Client) offlineStatus() Status {
	return Status{V: Version, Type: KindStatus, Site: c.o.Site, Door: c.o.Door, Online: false}
}

// currentStatus gathers the status; At and UptimeS are left for the caller.
func (c *Client) currentStatus() Status {
	ds := c.door.Status()
	depth, err := c.st.OutboxDepth()
	if err != nil {
		c.storeErr("outbox depth", err)
	}
	s := Status{
		V: Version, Type: KindStatus, Site: c.o.Site, Door: c.o.Door, Online: true,
		DoorState: ds.State(), Lockdown: ds.Lockdown, Reader: ds.Reader.String(), Journal: ds.Journal.String(), Clock: ds.Clock,
		ACLSeq: c.sync.acl.seq, SnapshotHash: c.sync.acl.hash, Outbox: depth,
		ACLStale: c.fresh.stale, Version: c.o.Version, Mode: ds.Mode, TZ: ds.TZ,
	}
	if s.ACLStale {
		s.StalePolicy = ds.StalePolicy
	}
	if id := c.o.Identity; id != nil {
		pub := id.Public()
		s.Fingerprint = pub.Fingerprint()
		s.SignKey = base64.StdEncoding.EncodeToString(pub.SignKey)
		s.SealKey = base64.StdEncoding.EncodeToString(pub.SealKey)
		if seq, hash, err := c.st.AuditHead(); err != nil {
			c.storeErr("audit head", err)
		} else if seq > 0 {
			s.HeadSeq, s.HeadHash = seq, hash
			if sig, err := id.SignHead(c.o.Site, c.o.Door, seq, hash); err == nil {
				s.HeadSig = sig
			}
		}
		if next := c.o.NextIdentity; next != nil {
			np := next.Public()
			s.NextFingerprint = np.Fingerprint()
			s.NextSignKey = base64.StdEncoding.EncodeToString(np.SignKey)
			s.NextSealKey = base64.StdEncoding.EncodeToString(np.SealKey)
			s.NextSig = id.Vouch(c.o.Site, c.o.Door, np)
		}
	}
	return s
}

// maybeStatus publishes the retained status when it changed, at most once
// per StatusInterval (always when force is set: a new session), and
// refreshes an unchanged one every StatusRefresh.
func (c *Client) maybeStatus(force bool) {
	if !c.connected() {
		return
	}
	s := c.currentStatus()
	now := c.mono()
	since := now.Sub(c.lastStatusAt)
	changed := s != c.lastStatus
	switch {
	case force:
	case !changed && since < c.o.StatusRefresh:
		return
	case since < c.o.StatusInterval:
		return
	}
	key := s
	s.At = c.clock.Now().UTC()
	s.UptimeS = int64(now.Sub(c.start) / time.Second)
	b, err := marshal("status", s)
	if err != nil {
		c.log.Error("mqtt: status", "err", err)
		return
	}
	if c.publish(c.topics.Status(c.o.Door), b, true) {
		c.lastStatus, c.lastStatusAt = key, now
		c.update(func(st *Stats) { st.StatusPublished++ })
	}
}
