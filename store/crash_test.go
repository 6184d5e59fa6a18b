package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashChild is the writer process of TestCrashDurability. It appends
// audit events, applies deltas, revokes cards, enrols cards and acks the
// outbox as fast as it can, and prints one line per write only after the
// write's transaction has committed:
//
//	A <seq> <detail>   an audit entry
//	R <uid>            a revocation
//	C <uid>            an enrolled card
//	D <seq>            an applied delta (it also enrolled card <uid> given in the line)
//	K <seq>            an outbox ack
//
// It runs until it is killed.
func crashChild() int {
	path := os.Getenv("LATCH_STORE_TEST_PATH")
	run := os.Getenv("LATCH_STORE_TEST_RUN")
	s, err := Open(path, &Options{PINParams: fastPIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		mu.Lock()
		os.Stdout.WriteString(line) // one write(2) per line
		mu.Unlock()
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	say("ready")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				detail := fmt.Sprintf("r%s-w%d-%d", run, w, n)
				e, err := s.Append(Event{Time: time.Now(), Clock: TimeSynced, Door: "front", Type: TypeAccess, Reason: ReasonGranted, Detail: detail})
				if err != nil {
					fail(err)
				}
				say("A %d %s", e.Seq, detail)
			}
		})
	}
	wg.Go(func() {
		for n := 0; ; n++ {
			var evs []Event
			for i := range 3 {
				evs = append(evs, Event{Time: time.Now(), Door: "front", Type: TypeDoor, Reason: ReasonDoorClosed, Detail: fmt.Sprintf("r%s-m%d-%d", run, n, i)})
			}
			out, err := s.AppendMany(evs)
			if err != nil {
				fail(err)
			}
			for _, e := range out {
				say("A %d %s", e.Seq, e.Detail)
			}
		}
	})
	wg.Go(func() {
		for n := 0; ; n++ {
			uid := []byte{0x08, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32())}
			if err := s.Revoke(Revocation{UID: uid, Reason: "lost"}); err != nil {
				fail(err)
			}
			say("R %X", uid)
		}
	})
	wg.Go(func() {
		for n := 0; ; n++ {
			uid := []byte{0x04, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32()), 1, 2, 3}
			if err := s.PutCard(Card{UID: uid, HolderID: "h" + strconv.Itoa(n%7), Doors: []string{"front"}}); err != nil {
				fail(err)
			}
			say("C %X", uid)
		}
	})
	wg.Go(func() {
		for {
			st, err := s.SyncState()
			if err != nil {
				fail(err)
			}
			uid := []byte{0x04, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32()), 4, 5, 6, 7, 8, 9}
			d := Delta{Seq: st.AppliedSeq + 1, Ops: []Op{
				{Kind: OpUpsertCard, Card: &Card{UID: uid, HolderID: "delta", Doors: []string{"*"}}},
				{Kind: OpRevokeHolder, HolderID: "gone" + strconv.FormatUint(st.AppliedSeq, 10)},
			}}
			if err := s.ApplyDelta(d); err != nil {
				fail(err)
			}
			say("D %d %X", d.Seq, uid)
		}
	})
	wg.Go(func() {
		for {
			seq, _, err := s.AuditHead()
			if err != nil {
				fail(err)
			}
			if seq > 20 {
				if err := s.Ack(seq - 20); err != nil {
					fail(err)
				}
				say("K %d", seq-20)
			}
		}
	})
	wg.Wait()
	return 0
}

// TestCrashDurability kills a writer process with SIGKILL at random
// moments and checks after every kill that the file opens, passes the
// consistency check, has a whole audit chain, and holds every write the
// child reported as committed.
func TestCrashDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	events := map[uint64]string{} // every acknowledged audit entry so far
	revoked := map[string]bool{}
	cards := map[string]bool{}
	var maxDelta, maxAck uint64
	totalLines := 0
	for kill := range *crashKills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=crash", "LATCH_STORE_TEST_PATH="+path, "LATCH_STORE_TEST_RUN="+strconv.Itoa(kill))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		// One kill in ten lands while the child is still opening the file.
		early := rng.IntN(10) == 0
		var timer *time.Timer
		arm := func(d time.Duration) { timer = time.AfterFunc(d, func() { _ = cmd.Process.Kill() }) }
		if early {
			arm(time.Duration(rng.IntN(15000)) * time.Microsecond)
		}
		var lines []string
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				if !early {
					arm(time.Millisecond + time.Duration(rng.IntN(30000))*time.Microsecond)
				}
				continue
			}
			lines = append(lines, line)
		}
		err = cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("kill %d: child did not die by the signal: %v\nstderr: %s", kill, err, stderr.String())
		}
		for _, line := range lines {
			f := strings.Fields(line)
			switch f[0] {
			case "A":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				events[seq] = f[2]
			case "R":
				revoked[f[1]] = true
			case "C":
				cards[f[1]] = true
			case "D":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				maxDelta = max(maxDelta, seq)
				cards[f[2]] = true
			case "K":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				maxAck = max(maxAck, seq)
			default:
				t.Fatalf("kill %d: unexpected child output %q", kill, line)
			}
		}
		totalLines += len(lines)
		if _, err := os.Stat(path); err != nil && kill == 0 {
			continue // killed before the file was made
		}
		crashCheck(t, kill, path, events, revoked, cards, maxDelta, maxAck)
	}
	t.Logf("%d kills, %d committed writes reported, %d audit entries, %d revocations, %d cards checked",
		*crashKills, totalLines, len(events), len(revoked), len(cards))
}

func crashCheck(t *testing.T, kill int, path string, events map[uint64]string, revoked, cards map[string]bool, maxDelta, maxAck uint64) {
	t.Helper()
	s, err := Open(path, testOptions())
	if err != nil {
		t.Fatalf("kill %d: Open after kill: %v", kill, err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("kill %d: Check: %v", kill, err)
	}
	r, err := s.Verify()
	if err != nil || !r.OK {
		t.Fatalf("kill %d: Verify: %+v, %v", kill, r, err)
	}
	all, err := s.EventsAfter(0, maxPage)
	for err == nil && len(all) > 0 && uint64(len(all))%maxPage == 0 {
		var more []Event
		more, err = s.EventsAfter(all[len(all)-1].Seq, maxPage)
		if len(more) == 0 {
			break
		}
		all = append(all, more...)
	}
	if err != nil {
		t.Fatalf("kill %d: reading events: %v", kill, err)
	}
	stored := make(map[uint64]string, len(all))
	for _, e := range all {
		stored[e.Seq] = e.Detail
	}
	for seq, detail := range events {
		if stored[seq] != detail {
			t.Fatalf("kill %d: audit entry %d committed as %q, found %q", kill, seq, detail, stored[seq])
		}
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatalf("kill %d: Snapshot: %v", kill, err)
	}
	have := map[string]bool{}
	for _, c := range sn.Cards {
		have["C"+fmt.Sprintf("%X", c.UID)] = true
	}
	for _, r := range sn.Revocations {
		if len(r.UID) > 0 {
			have["R"+fmt.Sprintf("%X", r.UID)] = true
		}
	}
	for uid := range cards {
		if !have["C"+uid] {
			t.Fatalf("kill %d: committed card %s is missing", kill, uid)
		}
	}
	for uid := range revoked {
		if !have["R"+uid] {
			t.Fatalf("kill %d: committed revocation of %s is missing", kill, uid)
		}
	}
	if sn.Seq < maxDelta {
		t.Fatalf("kill %d: applied seq %d, but delta %d was committed", kill, sn.Seq, maxDelta)
	}
	if acked, err := s.Acked(); err != nil || acked < maxAck {
		t.Fatalf("kill %d: acked %d (%v), but ack %d was committed", kill, acked, err, maxAck)
	}
	st, err := s.SyncState()
	if err != nil || st.SnapshotHash != HashSnapshot(sn) {
		t.Fatalf("kill %d: state hash %s (%v), snapshot hash %s", kill, st.SnapshotHash, err, HashSnapshot(sn))
	}
}
