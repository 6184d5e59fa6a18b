package brokertest

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on a loopback port that forwards to a target
// address, and can cut, black-hole or refuse the link on demand.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu       sync.Mutex
	hole     chan struct{} // non-nil while black-holed; closed by Heal
	pairs    map[*pair]bool
	accepted int
	closed   bool
	wg       sync.WaitGroup
}

type pair struct {
	client net.Conn
	hole   chan struct{} // set (under Proxy.mu) when a black hole caught the pair

	mu     sync.Mutex
	server net.Conn // set once dialled; nil before
	done   bool
}

func (p *pair) close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	s := p.server
	p.mu.Unlock()
	p.client.Close()
	if s != nil {
		s.Close()
	}
}

// attach records the dialled server side, or closes it at once and
// reports false when the pair was closed while dialling.
func (p *pair) attach(s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		s.Close()
		return false
	}
	p.server = s
	return true
}

// NewProxy listens on a free loopback port and forwards every connection
// to target. It is closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: proxy: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, pairs: make(map[*pair]bool)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut closes every current connection on both sides, as a broker restart
// or a reset link would. It returns how many it closed.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	ps := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		ps = append(ps, pr)
		delete(p.pairs, pr)
	}
	p.mu.Unlock()
	for _, pr := range ps {
		pr.close()
	}
	return len(ps)
}

// BlackHole stops forwarding without closing anything: bytes in flight
// and later ones are neither delivered nor refused, and the proxy stops
// reading so the sender's buffers fill, as on a dead link. New
// connections are accepted and then left silent.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole == nil {
		p.hole = make(chan struct{})
	}
	for pr := range p.pairs {
		if pr.hole == nil {
			pr.hole = p.hole
		}
	}
}

// Heal ends a black hole: connections that were stalled are closed (their
// peers have given up on them) and new ones are forwarded again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	h := p.hole
	p.hole = nil
	p.mu.Unlock()
	if h != nil {
		close(h)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.Heal()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		pr := &pair{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.accepted++
		p.pairs[pr] = true
		hole := p.hole
		pr.hole = hole
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(pr, hole)
	}
}

// serve connects a pair to the target and copies both ways.
func (p *Proxy) serve(pr *pair, hole chan struct{}) {
	defer p.wg.Done()
	defer p.forget(pr)
	if hole != nil {
		// Accepted during a black hole: silent until healed, then closed.
		<-hole
		pr.close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		pr.close()
		return
	}
	if !pr.attach(s) {
		return
	}
	p.mu.Lock()
	if _, live := p.pairs[pr]; !live || p.closed {
		p.mu.Unlock()
		pr.close()
		return
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(pr, s, pr.client) }()
	go func() { defer wg.Done(); p.copy(pr, pr.client, s) }()
	wg.Wait()
}

func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// copy forwards src to dst until either fails, holding still while the
// proxy is black-holed (and closing the pair when the hole heals).
func (p *Proxy) copy(pr *pair, dst, src net.Conn) {
	defer pr.close()
	buf := make([]byte, 32<<10)
	for {
		if !p.pass(pr) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass(pr) {
				return // dropped: the link died with these bytes in flight
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pass reports whether the pair may forward now. A pair caught by a black
// hole never forwards again: it waits for Heal and then reports false, so
// the stalled pair is closed.
func (p *Proxy) pass(pr *pair) bool {
	p.mu.Lock()
	h := pr.hole
	p.mu.Unlock()
	if h == nil {
		return true
	}
	<-h
	return false
}
