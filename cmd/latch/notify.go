package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/latchdoor/latch/store"
	"github.com/latchdoor/latch/store/site"
)

// Notifications: rules in latch serve's configuration say which events,
// alarms and site actions, at which doors, at which hours, go to which
// channel: an e-mail (SMTP with STARTTLS), a signed webhook, or the
// site's MQTT topic latch/v2/<site>/alarms. Each notification is an entry
// of the delivery log (GET /v1/notify/deliveries, latch notify
// deliveries); a webhook or e-mail that fails is tried again with
// back-off. See docs/alarms.md.
//
//	[[notify.rule]]
//	name    = "weekend-unlock"
//	events  = ["granted"]          # door event reasons
//	alarms  = ["door_forced"]      # alarm kinds, when raised
//	actions = ["login"]            # site actions (the console's log)
//	roles   = ["admin"]            # with actions: the account's role
//	doors   = ["front"]            # none: every door
//	days    = ["sat", "sun"]       # none: every day
//	hours   = "00:00-24:00"        # none: all day
//	tz      = "Europe/Berlin"      # none: the service's zone
//	open_for = "5m"                # with alarms: once open this long (offline: away this long)
//	channel = "webhook:siem"       # email:NAME, webhook:NAME or mqtt
//
//	[notify.webhook.siem]
//	url    = "https://siem.example/latch"
//	secret_file = "/etc/latch/siem.secret"   # the HMAC-SHA256 key
//
//	[notify.email.ops]
//	addr = "mail.example:587"      # STARTTLS is required
//	from = "latch@example"
//	to   = ["ops@example"]
//	username = "latch"             # with password_file: SMTP AUTH PLAIN
//	password_file = "/etc/latch/smtp.password"
//	ca_file = ""                   # the server's CA, if not in the system's roots

// notifyConfig is the [notify] section.
type notifyConfig struct {
	Rules   []notifyRule            `toml:"rule"`
	Webhook map[string]*webhookConf `toml:"webhook"`
	Email   map[string]*emailConf   `toml:"email"`
}

type notifyRule struct {
	Name    string   `toml:"name" json:"name"`
	Events  []string `toml:"events" json:"events,omitempty"`
	Alarms  []string `toml:"alarms" json:"alarms,omitempty"`
	Actions []string `toml:"actions" json:"actions,omitempty"`
	Roles   []string `toml:"roles" json:"roles,omitempty"`
	Doors   []string `toml:"doors" json:"doors,omitempty"`
	Days    []string `toml:"days" json:"days,omitempty"`
	Hours   string   `toml:"hours" json:"hours,omitempty"`
	TZ      string   `toml:"tz" json:"tz,omitempty"`
	OpenFor duration `toml:"open_for" json:"-"`
	Channel string   `toml:"channel" json:"channel"`

	loc      *time.Location
	days     [7]bool // by time.Weekday; all false: every day
	from, to int     // minutes of the day; to 0: all day
}

type webhookConf struct {
	URL        string `toml:"url"`
	Secret     string `toml:"secret"`
	SecretFile string `toml:"secret_file"`
}

type emailConf struct {
	Addr         string   `toml:"addr"`
	From         string   `toml:"from"`
	To           []string `toml:"to"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
	CAFile       string   `toml:"ca_file"`

	password string
	roots    *x509.CertPool
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseNotify reads a [notify] section on its own: what the fuzz target
// feeds.
func parseNotify(b []byte) (notifyConfig, error) {
	var c struct {
		Notify notifyConfig `toml:"notify"`
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c.Notify, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c.Notify, fmt.Errorf("unknown setting %s", und[0].String())
	}
	return c.Notify, c.Notify.check(false)
}

// check checks the rules and channels; with files, it reads the secret
// and password files.
func (c *notifyConfig) check(files bool) error {
	names := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		where := fmt.Sprintf("notify.rule %d (%q)", i+1, r.Name)
		if names[r.Name] {
			return fmt.Errorf("%s: want a name of its own, 1 to 64 characters", where)
		}
		names[r.Name] = true
		if err := r.check(where); err != nil {
			return err
		}
		if !c.hasChannel(r.Channel) {
			return fmt.Errorf("%s: channel %q: want mqtt, webhook:NAME or email:NAME of a [notify.webhook.NAME] or [notify.email.NAME]", where, r.Channel)
		}
	}
	for name, w := range c.Webhook {
		if !strings.HasPrefix(w.URL, "https://") && !strings.HasPrefix(w.URL, "http://") {
			return fmt.Errorf("notify.webhook.%s: url %q: want http:// or https://", name, w.URL)
		}
		if files && w.SecretFile != "" {
			b, err := os.ReadFile(w.SecretFile)
			if err != nil {
				return fmt.Errorf("notify.webhook.%s: %w", name, err)
			}
			w.Secret = strings.TrimSpace(string(b))
		}
		if files && w.Secret == "" {
			return fmt.Errorf("notify.webhook.%s: a secret (secret or secret_file) is required", name)
		}
	}
	for name, e := range c.Email {
		if _, _, err := net.SplitHostPort(e.Addr); err != nil || e.From == "" || len(e.To) == 0 {
			return fmt.Errorf("notify.email.%s: want addr HOST:PORT, from and to", name)
		}
		if !files {
			continue
		}
		if e.PasswordFile != "" {
			b, err := os.ReadFile(e.PasswordFile)
			if err != nil {
				return fmt.Errorf("notify.email.%s: %w", name, err)
			}
			e.password = strings.TrimRight(string(b), "\r\n")
		}
		if e.CAFile != "" {
			b, err := os.ReadFile(e.CAFile)
			if err != nil {
				return fmt.Errorf("notify.email.%s: %w", name, err)
			}
			e.roots = x509.NewCertPool()
			if !e.roots.AppendCertsFromPEM(b) {
				return fmt.Errorf("notify.email.%s: ca_file %s: no PEM certificate", name, e.CAFile)
			}
		}
	}
	return nil
}

// check checks a rule's fields, all but its channel, and sets what
// matching reads (days, hours, zone); where names the rule in an error.
// The configuration's rules and the stored ones are checked by it alike.
func (r *notifyRule) check(where string) error {
	if r.Name == "" || checkText("name", r.Name, 64) != nil {
		return fmt.Errorf("%s: want a name of its own, 1 to 64 characters", where)
	}
	if len(r.Events)+len(r.Alarms)+len(r.Actions) == 0 {
		return fmt.Errorf("%s: give events, alarms or actions", where)
	}
	for _, k := range r.Alarms {
		if _, err := site.ParseAlarmKind(k); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	r.days = [7]bool{}
	for _, d := range r.Days {
		i := slices.Index(weekdays, strings.ToLower(d))
		if i < 0 {
			return fmt.Errorf("%s: day %q: want mon, tue, wed, thu, fri, sat or sun", where, d)
		}
		r.days[i] = true
	}
	r.from, r.to = 0, 0
	if r.Hours != "" {
		var h1, m1, h2, m2 int
		if n, err := fmt.Sscanf(r.Hours, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); n != 4 || err != nil ||
			h1 < 0 || h1 > 23 || m1 < 0 || m1 > 59 || h2 < 0 || h2 > 24 || m2 < 0 || m2 > 59 || h2*60+m2 > 24*60 || h1*60+m1 == h2*60+m2 {
			return fmt.Errorf("%s: hours %q: want HH:MM-HH:MM, e.g. 18:00-07:00", where, r.Hours)
		}
		r.from, r.to = h1*60+m1, h2*60+m2
	}
	r.loc = time.Local
	if r.TZ != "" {
		loc, err := time.LoadLocation(r.TZ)
		if err != nil {
			return fmt.Errorf("%s: tz %q: %w", where, r.TZ, err)
		}
		r.loc = loc
	}
	if r.OpenFor.Duration < 0 {
		return fmt.Errorf("%s: open_for %v: want 0 or more", where, r.OpenFor.Duration)
	}
	return nil
}

// hasChannel reports whether ch names a channel of the configuration:
// mqtt, or webhook:NAME or email:NAME of a configured one.
func (c *notifyConfig) hasChannel(ch string) bool {
	kind, name, _ := strings.Cut(ch, ":")
	switch {
	case ch == "mqtt":
		return true
	case kind == "webhook":
		return c.Webhook[name] != nil
	case kind == "email":
		return c.Email[name] != nil
	}
	return false
}

// at reports whether the rule's days and hours hold at t.
func (r *notifyRule) at(t time.Time) bool {
	t = t.In(r.loc)
	if r.days != [7]bool{} && !r.days[t.Weekday()] {
		return false
	}
	if r.to == 0 && r.from == 0 {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if r.from < r.to {
		return m >= r.from && m < r.to
	}
	return m >= r.from || m < r.to // across midnight
}

func (r *notifyRule) door(d string) bool { return len(r.Doors) == 0 || slices.Contains(r.Doors, d) }

// notification is what a channel sends: the webhook's body, the MQTT
// message, the e-mail's text.
type notification struct {
	V      int          `json:"v"`
	Site   string       `json:"site"`
	Rule   string       `json:"rule"`
	Time   time.Time    `json:"time"`
	What   string       `json:"what"` // "event", "alarm raised", "alarm open", "alarm repeated while snoozed", "action"
	Door   string       `json:"door,omitempty"`
	Event  *store.Event `json:"event,omitempty"`
	Alarm  *site.Alarm  `json:"alarm,omitempty"`
	Action *site.Action `json:"action,omitempty"`
	// Visitor and Message: a visitor's first badge-in (visitors.go);
	// Message also says how often a snoozed alarm repeated.
	Visitor *site.Visitor `json:"visitor,omitempty"`
	Message string        `json:"message,omitempty"`
}

func (n *notification) subject() string {
	switch {
	case n.Alarm != nil:
		return fmt.Sprintf("latch %s: %s alarm %d: %s at door %s", n.Site, n.Alarm.Priority, n.Alarm.ID, n.Alarm.Kind, n.Alarm.Door)
	case n.Event != nil:
		return fmt.Sprintf("latch %s: %s at door %s (seq %d)", n.Site, n.Event.Reason, n.Door, n.Event.Seq)
	case n.Visitor != nil:
		return "latch " + n.Site + ": " + n.Message
	case n.Action != nil:
		return fmt.Sprintf("latch %s: %s by %s (%s) from %s", n.Site, n.Action.What, n.Action.User, n.Action.Role, n.Action.From)
	}
	return "latch " + n.Site
}

// SignatureHeader carries a webhook body's HMAC-SHA256 under the hook's
// secret: sha256=<hex>.
const signatureHeader = "X-Latch-Signature"

// deliveryHeader carries a webhook delivery's id, the same on each
// attempt: an attempt cut short by a stop is made again at the next
// start, and a receiver that saw it can drop the repeat.
const deliveryHeader = "X-Latch-Delivery"

// sign is the signature header's value of body.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// notifier matches rules and delivers.
type notifier struct {
	cfg     notifyConfig
	site    string
	db      *site.DB
	log     *slog.Logger
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time                          // the retries' timer, on now's clock
	publish func(ctx context.Context, topic string, payload []byte) error // the site's MQTT topic
	http    *http.Client

	rules atomic.Pointer[[]notifyRule] // in force: the configuration's and the enabled stored ones (reload)

	mu        sync.Mutex
	queue     []*pending
	wake      chan struct{}
	warned    map[string]bool // stored rules not in force that were logged
	fired     map[string]bool // rule and alarm id: open_for rules notified
	actionSeq uint64          // the last site action read
	pruneAt   time.Time       // when the delivery log is pruned next
}

// pending is a delivery waiting for its next attempt.
type pending struct {
	d    site.Delivery
	body []byte
	n    *notification
	due  time.Time
}

// Delivery retries: after 1 s, doubling, at most notifyAttempts attempts.
const (
	notifyFirstRetry = time.Second
	notifyAttempts   = 6
)

// The delivery log keeps deliveries for deliveryRetention, at most
// deliveryKeep of them, and is pruned every deliveryPruneEvery; a
// pending delivery stays until it ends.
const (
	deliveryRetention  = 30 * 24 * time.Hour
	deliveryKeep       = 10000
	deliveryPruneEvery = time.Hour
)

// newNotifier makes the notifier of cfg's channels and rules and of the
// rules stored in db. Time is now's, and a retry waits on after.
func newNotifier(cfg notifyConfig, siteID string, db *site.DB, log *slog.Logger, now func() time.Time,
	after func(time.Duration) <-chan time.Time, publish func(context.Context, string, []byte) error) (*notifier, error) {
	n := &notifier{cfg: cfg, site: siteID, db: db, log: log.With("part", "notify"), now: now, after: after, publish: publish,
		http: &http.Client{Timeout: 10 * time.Second}, wake: make(chan struct{}, 1), warned: map[string]bool{}, fired: map[string]bool{}}
	as, _, err := db.Actions(0, 1, 0, nil)
	if err != nil {
		return nil, err
	}
	if len(as) > 0 {
		n.actionSeq = as[0].Seq
	}
	if err := n.reload(); err != nil {
		return nil, err
	}
	if err := n.resume(); err != nil {
		return nil, err
	}
	return n, nil
}

// current returns the rules in force.
func (n *notifier) current() []notifyRule { return *n.rules.Load() }

// storedRule is a stored rule as the notifier matches it, checked.
func storedRule(x site.NotifyRule) (notifyRule, error) {
	r := notifyRule{Name: x.Name, Events: x.Events, Alarms: x.Alarms, Actions: x.Actions, Roles: x.Roles, Doors: x.Doors,
		Days: x.Days, Hours: x.Hours, TZ: x.TZ, Channel: x.Channel}
	where := fmt.Sprintf("notify rule %q", x.Name)
	if x.OpenFor != "" {
		d, err := time.ParseDuration(x.OpenFor)
		if err != nil {
			return r, fmt.Errorf("%s: open_for %q: want a duration like 5m", where, x.OpenFor)
		}
		r.OpenFor.Duration = d
	}
	return r, r.check(where)
}

// ruleState is how a stored rule stands: "active", "disabled", "channel
// missing" (the configuration lost its channel), or why it is invalid.
func (n *notifier) ruleState(x site.NotifyRule) (notifyRule, string) {
	r, err := storedRule(x)
	switch {
	case err != nil:
		return r, "invalid: " + err.Error()
	case x.Disabled:
		return r, "disabled"
	case !n.cfg.hasChannel(r.Channel):
		return r, "channel missing"
	}
	return r, "active"
}

// reload puts in force the configuration's rules and the enabled stored
// rules whose channel the configuration has; a stored rule left out for
// a missing channel or a fault is logged, once.
func (n *notifier) reload() error {
	stored, err := n.db.NotifyRules()
	if err != nil {
		return err
	}
	rules := slices.Clone(n.cfg.Rules)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range stored {
		r, state := n.ruleState(x)
		switch state {
		case "active":
			rules = append(rules, r)
		case "disabled":
		default:
			if !n.warned[x.Name] {
				n.warned[x.Name] = true
				n.log.Warn("stored notification rule not in force", "rule", x.Name, "channel", x.Channel, "state", state)
			}
		}
	}
	n.rules.Store(&rules)
	return nil
}

// resume queues the pending deliveries of the database, each due at its
// next attempt; one whose channel the configuration lost is failed.
func (n *notifier) resume() error {
	qs, err := n.db.QueuedDeliveries()
	if err != nil {
		return err
	}
	for _, q := range qs {
		if !n.cfg.hasChannel(q.Channel) {
			q.Status, q.Next, q.Error = site.DeliveryFailed, time.Time{}, fmt.Sprintf("channel %s is no longer in the configuration", q.Channel)
			n.log.Warn("pending notification failed", "id", q.ID, "rule", q.Rule, "err", q.Error)
			if _, err := n.db.PutDelivery(q.Delivery); err != nil {
				return err
			}
			continue
		}
		var x notification
		if err := json.Unmarshal(q.Body, &x); err != nil {
			// One damaged entry fails alone; the service starts.
			q.Status, q.Next, q.Error = site.DeliveryFailed, time.Time{}, fmt.Sprintf("its saved body is unreadable: %v", err)
			n.log.Error("pending notification failed", "id", q.ID, "rule", q.Rule, "err", q.Error)
			if _, err := n.db.PutDelivery(q.Delivery); err != nil {
				return err
			}
			continue
		}
		n.queue = append(n.queue, &pending{d: q.Delivery, body: q.Body, n: &x, due: q.Next})
	}
	if len(qs) > 0 {
		n.log.Info("pending notifications resumed", "count", len(n.queue))
	}
	return nil
}

// events notifies the rules the stored events match.
func (n *notifier) events(arr []site.Arrival) {
	rules := n.current()
	for i := range arr {
		e := &arr[i].Event
		for ri := range rules {
			r := &rules[ri]
			if slices.Contains(r.Events, string(e.Reason)) && r.door(arr[i].Door) && r.at(n.now()) {
				n.enqueue(r, &notification{What: "event", Door: arr[i].Door, Event: e})
			}
		}
	}
}

// alarm notifies the rules a raised alarm matches at once.
func (n *notifier) alarm(c site.AlarmChange) {
	if c.What == site.AlarmSnoozeEnded {
		n.snoozeEnded(c)
		return
	}
	if c.What != site.AlarmRaised {
		return
	}
	a := c.Alarm
	n.atOnce(&a, &notification{What: "alarm raised", Door: a.Door, Alarm: &a})
}

// atOnce sends x by each rule that takes alarm a as it happens: rules of
// a's kind, at its door, at this hour, without open_for.
func (n *notifier) atOnce(a *site.Alarm, x *notification) {
	rules := n.current()
	for ri := range rules {
		r := &rules[ri]
		if r.OpenFor.Duration == 0 && slices.Contains(r.Alarms, string(a.Kind)) && r.door(a.Door) && r.at(n.now()) {
			y := *x // each delivery its own copy: enqueue stamps it
			n.enqueue(r, &y)
		}
	}
}

// tick notifies the open_for rules of alarms open long enough, and the
// rules of site actions logged since the last tick; and prunes the
// delivery log when it is time.
func (n *notifier) tick() {
	now := n.now()
	if !now.Before(n.pruneAt) {
		n.pruneAt = now.Add(deliveryPruneEvery)
		if k, err := n.db.PruneDeliveries(now.Add(-deliveryRetention), deliveryKeep); err != nil {
			n.log.Error("prune the delivery log", "err", err)
		} else if k > 0 {
			n.log.Info("delivery log pruned", "deleted", k)
		}
	}
	rules := n.current()
	var open []site.Alarm
	for ri := range rules {
		if rules[ri].OpenFor.Duration > 0 && open == nil {
			var err error
			if open, err = n.db.Alarms(true, 0); err != nil {
				n.log.Error("read open alarms", "err", err)
				return
			}
		}
	}
	for ri := range rules {
		r := &rules[ri]
		for i := range open {
			a := open[i]
			since := a.Opened
			if !a.Since.IsZero() {
				since = a.Since
			}
			key := fmt.Sprintf("%s/%d", r.Name, a.ID)
			if r.OpenFor.Duration == 0 || !slices.Contains(r.Alarms, string(a.Kind)) || !r.door(a.Door) ||
				now.Sub(since) < r.OpenFor.Duration || n.fired[key] || a.Snoozed(now) || !r.at(now) {
				continue
			}
			n.fired[key] = true
			n.enqueue(r, &notification{What: "alarm open", Door: a.Door, Alarm: &a})
		}
	}
	as, _, err := n.db.Actions(0, 256, 0, func(a *site.Action) bool { return a.Seq > n.actionSeq })
	if err != nil {
		n.log.Error("read site actions", "err", err)
		return
	}
	for i := len(as) - 1; i >= 0; i-- {
		a := as[i]
		n.actionSeq = max(n.actionSeq, a.Seq)
		for ri := range rules {
			r := &rules[ri]
			if slices.Contains(r.Actions, a.What) && (len(r.Roles) == 0 || slices.Contains(r.Roles, string(a.Role))) && a.Result == "ok" && r.at(now) {
				n.enqueue(r, &notification{What: "action", Action: &a})
			}
		}
	}
}

// enqueue logs a delivery of x by r's channel and queues it, in the
// database too, so that a restart goes on with it.
func (n *notifier) enqueue(r *notifyRule, x *notification) {
	x.V, x.Site, x.Rule, x.Time = 1, n.site, r.Name, n.now()
	body, err := json.Marshal(x)
	if err != nil {
		n.log.Error("encode notification", "rule", r.Name, "err", err)
		return
	}
	d, err := n.db.QueueDelivery(site.Delivery{Time: x.Time, Rule: r.Name, Channel: r.Channel, Subject: x.subject(), Status: site.DeliveryPending, Next: x.Time}, body)
	if err != nil {
		n.log.Error("delivery log", "err", err)
	}
	n.mu.Lock()
	n.queue = append(n.queue, &pending{d: d, body: body, n: x, due: x.Time})
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run delivers what is queued, each when due, until ctx ends.
func (n *notifier) run(ctx context.Context) {
	for ctx.Err() == nil {
		now := n.now()
		var due []*pending
		var next time.Time
		n.mu.Lock()
		n.queue = slices.DeleteFunc(n.queue, func(p *pending) bool {
			if !p.due.After(now) {
				due = append(due, p)
				return true
			}
			if next.IsZero() || p.due.Before(next) {
				next = p.due
			}
			return false
		})
		n.mu.Unlock()
		if len(due) > 0 {
			for _, p := range due {
				n.attempt(ctx, p)
			}
			continue
		}
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = n.after(next.Sub(now))
		}
		select {
		case <-ctx.Done():
		case <-n.wake:
		case <-timer:
		}
	}
}

// attempt tries a delivery once, logs how it went, and queues it again
// after a back-off if it failed and may be tried again. An attempt cut
// short by the end of ctx (latch serve stopping) is not counted: the
// delivery stays pending, to be tried at the next start.
func (n *notifier) attempt(ctx context.Context, p *pending) {
	err := n.send(ctx, p)
	if err != nil && ctx.Err() != nil {
		p.d.Next = n.now()
		n.logDelivery(p)
		return
	}
	p.d.Attempts++
	p.d.Last = n.now()
	p.d.Next = time.Time{}
	switch {
	case err == nil:
		p.d.Status, p.d.Error = site.DeliveryDelivered, ""
	case p.d.Attempts >= notifyAttempts:
		p.d.Status, p.d.Error = site.DeliveryFailed, err.Error()
	default:
		p.d.Error = err.Error()
		p.due = p.d.Last.Add(notifyFirstRetry << (p.d.Attempts - 1))
		p.d.Next = p.due
		n.mu.Lock()
		n.queue = append(n.queue, p)
		n.mu.Unlock()
	}
	if err != nil {
		n.log.Warn("notification not delivered", "channel", p.d.Channel, "rule", p.d.Rule, "attempt", p.d.Attempts, "err", err)
	}
	n.logDelivery(p)
}

// logDelivery writes p's delivery to the log, and keeps the id the log
// gave it when it had none (its queueing failed), so that its later
// attempts update one entry.
func (n *notifier) logDelivery(p *pending) {
	d, err := n.db.PutDelivery(p.d)
	if err != nil {
		n.log.Error("delivery log", "err", err)
		return
	}
	p.d.ID = d.ID
}

// send delivers p once on its channel.
func (n *notifier) send(ctx context.Context, p *pending) error {
	kind, name, _ := strings.Cut(p.d.Channel, ":")
	switch kind {
	case "mqtt":
		return n.publish(ctx, "latch/v2/"+n.site+"/alarms", p.body)
	case "webhook":
		if w := n.cfg.Webhook[name]; w != nil {
			return n.webhook(ctx, w, p.d.ID, p.body)
		}
	case "email":
		if e := n.cfg.Email[name]; e != nil {
			return sendMail(e, p.n, p.body)
		}
	}
	return fmt.Errorf("channel %q", p.d.Channel)
}

// webhook posts body, signed, with the delivery's id in
// X-Latch-Delivery (the same on every attempt, so a receiver can drop a
// repeat). Its errors leave the URL out: a webhook URL often holds a
// secret, and the errors go to the delivery log and the service log.
func (n *notifier) webhook(ctx context.Context, w *webhookConf, id uint64, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: the request could not be made from its URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signatureHeader, sign(w.Secret, body))
	if id != 0 {
		req.Header.Set(deliveryHeader, strconv.FormatUint(id, 10))
	}
	resp, err := n.http.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: the receiver answered %s", resp.Status)
	}
	return nil
}

// sendMail sends x by e-mail, over STARTTLS only.
func sendMail(e *emailConf, x *notification, body []byte) error {
	host, _, _ := net.SplitHostPort(e.Addr)
	c, err := smtp.Dial(e.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", e.Addr, err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return fmt.Errorf("smtp %s: no STARTTLS: not sending in clear", e.Addr)
	}
	if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: e.roots, MinVersion: tls.VersionTLS12}); err != nil {
		return fmt.Errorf("smtp %s: starttls: %w", e.Addr, err)
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.password, host)); err != nil {
			return fmt.Errorf("smtp %s: auth: %w", e.Addr, err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return fmt.Errorf("smtp %s: mail from: %w", e.Addr, err)
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp %s: rcpt %s: %w", e.Addr, to, err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: data: %w", e.Addr, err)
	}
	subject := strings.NewReplacer("\r", " ", "\n", " ").Replace(x.subject())
	fmt.Fprintf(wc, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n\r\n%s\r\n",
		e.From, strings.Join(e.To, ", "), subject, x.Time.Format(time.RFC1123Z), subject, body)
	if err := wc.Close(); err != nil {
		return fmt.Errorf("smtp %s: data: %w", e.Addr, err)
	}
	return c.Quit()
}

// --- the API and the CLI ---

// GET /v1/notify/deliveries?limit=   []site.Delivery, newest first
func (a *api) notifyRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/notify/deliveries", func(w http.ResponseWriter, r *http.Request) {
		ds, err := a.db.Deliveries(1000)
		if err != nil {
			a.failErr(w, r, err)
			return
		}
		if ds == nil {
			ds = []site.Delivery{}
		}
		writeJSON(w, http.StatusOK, ds)
	})
}

func cmdNotifyDeliveries(ctx context.Context, e *env, args []string) error {
	return listCmd(ctx, e, args, "notify deliveries", "/v1/notify/deliveries", func(w io.Writer, ds []site.Delivery) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tRULE\tCHANNEL\tSTATUS\tATTEMPTS\tSUBJECT\tERROR")
		for _, d := range ds {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, when(d.Time), d.Rule, d.Channel, d.Status, d.Attempts, d.Subject, dash(d.Error))
		}
		tw.Flush()
	})
}
