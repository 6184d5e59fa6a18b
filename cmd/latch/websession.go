package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"sync"
	"time"

	"github.com/latchdoor/latch/store/site"
)

// The console's sessions and login limits. Both live in memory: a restart
// of latch serve logs everyone out and forgets failed logins, which is the
// safe side for sessions and costs an attacker a restart they cannot cause.

// maxSessions bounds the sessions kept at once; the oldest go first.
const maxSessions = 10000

// session is one login.
type session struct {
	id      string // the hash of the cookie's token: the token itself is not kept
	user    string
	role    site.Role
	changed time.Time // the account's last change when it logged in
	csrf    string    // the token every change must carry
	token   string    // the API token's name, for a request made with one: no cookie, no CSRF token
	created time.Time
	seen    time.Time
	// flash and flashErr are the message of the last change, for the
	// next page.
	flash, flashErr string
	// changes holds the view seq each door needs for the last changes made
	// in this session, so that their progress page can say which doors
	// applied them.
	changes map[uint64]map[string]uint64
}

// sessions are the logins in force.
type sessions struct {
	ttl, idle time.Duration
	mu        sync.Mutex
	m         map[string]*session
}

func newSessions(ttl, idle time.Duration) *sessions {
	return &sessions{ttl: ttl, idle: idle, m: make(map[string]*session)}
}

// randomToken returns 32 random bytes in hex.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24)
	return hex.EncodeToString(b)
}

func tokenID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// start makes a session for u and returns the cookie's token.
func (s *sessions) start(u site.User, now time.Time) (string, *session) {
	token := randomToken()
	ss := &session{id: tokenID(token), user: u.Name, role: u.Role, changed: u.Changed, csrf: randomToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	for len(s.m) >= maxSessions {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.m, oldest.id)
	}
	s.m[ss.id] = ss
	return token, ss
}

// prune drops expired sessions. The caller holds s.mu.
func (s *sessions) prune(now time.Time) {
	for id, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, id)
		}
	}
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.created) >= s.ttl || now.Sub(ss.seen) >= s.idle
}

// get returns the session of a cookie's token, or nil; touch counts the
// request as activity (a page's own background refresh does not).
func (s *sessions) get(token string, now time.Time, touch bool) *session {
	if token == "" {
		return nil
	}
	id := tokenID(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if s.expired(ss, now) {
		delete(s.m, id)
		return nil
	}
	if touch {
		ss.seen = now
	}
	return ss
}

// end ends one session.
func (s *sessions) end(ss *session) {
	s.mu.Lock()
	delete(s.m, ss.id)
	s.mu.Unlock()
}

// remember keeps the targets of a change made in the session.
func (s *sessions) remember(ss *session, seq uint64, targets map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.changes == nil {
		ss.changes = make(map[uint64]map[string]uint64)
	}
	for k := range ss.changes {
		if len(ss.changes) < 16 {
			break
		}
		delete(ss.changes, k)
	}
	ss.changes[seq] = targets
}

// targets returns the targets of a change made in the session, or nil.
func (s *sessions) targets(ss *session, seq uint64) map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ss.changes[seq]
}

// csrfOK reports whether token is the session's CSRF token.
func (ss *session) csrfOK(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(ss.csrf)) == 1
}

// Login limits: after accountFails failed logins to one account within
// failWindow, that account refuses every login for lockFor; after
// addressFails from one address, so does that address.
const (
	accountFails = 20
	addressFails = 50
	failWindow   = 15 * time.Minute
	lockFor      = 15 * time.Minute
	maxLimited   = 100000 // failure records kept at most
)

// failures counts the failed logins of one account or address.
type failures struct {
	n      int
	first  time.Time
	locked time.Time // until then, refused
	noted  bool      // a refusal during this lock was recorded
}

// loginLimits tracks failed logins by account and by address.
type loginLimits struct {
	mu      sync.Mutex
	account map[string]*failures
	address map[string]*failures
}

func newLoginLimits() *loginLimits {
	return &loginLimits{account: make(map[string]*failures), address: make(map[string]*failures)}
}

// addressKey is what the address limit counts by: an IPv4 address, or
// an IPv6 address's /64, which one client usually holds whole.
func addressKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// lockedUntil returns when a lock on the account or the address ends, or
// the zero time when neither is locked; and whether this is the lock's
// first refusal, the one worth a record (an attacker's further tries
// during the lock cost them nothing, so they are not written each).
func (l *loginLimits) lockedUntil(account, address string, now time.Time) (until time.Time, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range []*failures{l.account[account], l.address[addressKey(address)]} {
		if f != nil && now.Before(f.locked) {
			if f.locked.After(until) {
				until = f.locked
			}
			if !f.noted {
				f.noted, first = true, true
			}
		}
	}
	return until, first
}

// fail records a failed login and reports whether it locked the account
// or the address.
func (l *loginLimits) fail(account, address string, now time.Time) (locked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.account)+len(l.address) >= maxLimited {
		for _, m := range []map[string]*failures{l.account, l.address} {
			for k, f := range m {
				if now.Sub(f.first) >= failWindow && !now.Before(f.locked) {
					delete(m, k)
				}
			}
		}
	}
	for _, c := range []struct {
		m     map[string]*failures
		k     string
		limit int
	}{{l.account, account, accountFails}, {l.address, addressKey(address), addressFails}} {
		f := c.m[c.k]
		if f == nil {
			if len(c.m) >= maxLimited/2 {
				continue // full of live records: those already counted, and the other limit, still hold
			}
			f = &failures{first: now}
			c.m[c.k] = f
		}
		if now.Sub(f.first) >= failWindow {
			f.n, f.first = 0, now
		}
		f.n++
		if f.n >= c.limit && !now.Before(f.locked) {
			f.locked, f.noted = now.Add(lockFor), false
			f.n, f.first = 0, now
			locked = true
		}
	}
	return locked
}

// succeed clears an account's failures after a good login.
func (l *loginLimits) succeed(account string) {
	l.mu.Lock()
	delete(l.account, account)
	l.mu.Unlock()
}
