package site

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Stored notification rules survive a reopen, are listed by name, and
// one without a name or channel is refused.
func TestNotifyRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := d.NotifyRules(); err != nil || len(rs) != 0 {
		t.Fatalf("a new file lists %v, %v", rs, err)
	}
	if _, err := d.NotifyRule("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("NotifyRule before any: %v", err)
	}
	if err := d.DeleteNotifyRule("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteNotifyRule before any: %v", err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, r := range []NotifyRule{
		{Name: "weekend", Events: []string{"granted"}, Days: []string{"sat", "sun"}, TZ: "UTC", Channel: "email:ops", Created: now, By: "ada"},
		{Name: "offline", Alarms: []string{"offline"}, OpenFor: "5m", Hours: "18:00-07:00", Channel: "mqtt"},
	} {
		if err := d.PutNotifyRule(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []NotifyRule{{Channel: "mqtt"}, {Name: "x"}, {Name: string(make([]byte, 65)), Channel: "mqtt"}} {
		if err := d.PutNotifyRule(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	r, err := d.NotifyRule("offline")
	if err != nil {
		t.Fatal(err)
	}
	r.Disabled = true
	if err := d.PutNotifyRule(r); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rs, err := d.NotifyRules()
	if err != nil || len(rs) != 2 || rs[0].Name != "offline" || !rs[0].Disabled || rs[0].OpenFor != "5m" ||
		rs[1].Name != "weekend" || !slices.Equal(rs[1].Days, []string{"sat", "sun"}) || !rs[1].Created.Equal(now) || rs[1].By != "ada" {
		t.Fatalf("after a reopen: %+v, %v", rs, err)
	}
	if err := d.DeleteNotifyRule("offline"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := d.NotifyRules(); len(rs) != 1 || rs[0].Name != "weekend" {
		t.Fatalf("after a delete: %+v", rs)
	}
}

// A pending delivery keeps its body in the queue across a reopen, until
// it is delivered or failed; pruning deletes old and surplus deliveries,
// never a pending one.
func TestDeliveryQueueAndPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.db")
	d, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := d.QueueDelivery(Delivery{ID: 3, Status: DeliveryPending}, []byte("{}")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("queue with an id: %v", err)
	}
	var ids []uint64
	for i := range 5 {
		x, err := d.QueueDelivery(Delivery{Time: t0.Add(time.Duration(i) * 24 * time.Hour), Rule: "r", Channel: "webhook:h", Status: DeliveryPending, Next: t0}, []byte(`{"n":`+string(rune('0'+i))+`}`))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, x.ID)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	q, err := d.QueuedDeliveries()
	if err != nil || len(q) != 5 || q[2].ID != ids[2] || string(q[2].Body) != `{"n":2}` || !q[2].Next.Equal(t0) || q[2].Channel != "webhook:h" {
		t.Fatalf("queue after a reopen: %+v, %v", q, err)
	}
	// Delivered, failed, delivered, pending, delivered.
	for i, st := range []string{DeliveryDelivered, DeliveryFailed, DeliveryDelivered, DeliveryPending, DeliveryDelivered} {
		x := q[i].Delivery
		x.Status, x.Attempts = st, 1
		if _, err := d.PutDelivery(x); err != nil {
			t.Fatal(err)
		}
	}
	if q, err := d.QueuedDeliveries(); err != nil || len(q) != 1 || q[0].ID != ids[3] || q[0].Attempts != 1 {
		t.Fatalf("queue after delivering: %+v, %v", q, err)
	}
	// Older than day 2: the first two; the pending fourth stays.
	if n, err := d.PruneDeliveries(t0.Add(36*time.Hour), 0); err != nil || n != 2 {
		t.Fatalf("prune by age: %d, %v", n, err)
	}
	if n, err := d.PruneDeliveries(time.Time{}, 1); err != nil || n != 1 {
		t.Fatalf("prune to 1: %d, %v", n, err)
	}
	ds, err := d.Deliveries(0)
	if err != nil || len(ds) != 2 || ds[0].ID != ids[4] || ds[1].ID != ids[3] || ds[1].Status != DeliveryPending {
		t.Fatalf("after pruning: %+v, %v", ds, err)
	}
}
