package store

import (
	"errors"
	"testing"
	"time"
)

func TestMarkSigned(t *testing.T) {
	s := openTest(t, nil)
	local := time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC)
	issued := testEpoch
	mustDo(t, s.MarkSigned(local, issued))
	// An older message (delayed in a queue) does not move issued_at back.
	mustDo(t, s.MarkSigned(local.Add(time.Minute), issued.Add(-time.Hour)))
	st, err := s.SyncState()
	mustDo(t, err)
	if !st.LastSignedAt.Equal(local.Add(time.Minute)) || !st.LastIssuedAt.Equal(issued) {
		t.Errorf("sync state %+v", st)
	}
	if err := s.MarkSigned(time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), issued); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("absurd time: %v", err)
	}

	// A site time found to lie in the future is brought back; never forward.
	mustDo(t, s.LowerSignedTime(issued.Add(-2*time.Hour)))
	mustDo(t, s.LowerSignedTime(issued))
	st, err = s.SyncState()
	mustDo(t, err)
	if !st.LastIssuedAt.Equal(issued.Add(-2 * time.Hour)) {
		t.Errorf("after lowering: last issued %s, want %s", st.LastIssuedAt, issued.Add(-2*time.Hour))
	}
}

func TestRecordCommand(t *testing.T) {
	opts := testOptions()
	s := openTest(t, opts)
	now := testEpoch
	fresh, err := s.RecordCommand("cmd-1", 7, now.Add(time.Minute), now)
	if err != nil || !fresh {
		t.Fatalf("first: %v, %v", fresh, err)
	}
	fresh, err = s.RecordCommand("cmd-1", 7, now.Add(time.Minute), now.Add(time.Second))
	if err != nil || fresh {
		t.Errorf("replay: fresh=%v, %v", fresh, err)
	}
	// Remembered across a restart.
	s = reopen(t, s, opts)
	if fresh, _ := s.RecordCommand("cmd-1", 7, now.Add(time.Minute), now.Add(2*time.Second)); fresh {
		t.Error("replay after restart accepted")
	}
	if fresh, _ := s.RecordCommand("cmd-2", 9, now, now); fresh {
		t.Error("expired command accepted")
	}
	fresh, err = s.RecordCommand("cmd-3", 8, now.Add(time.Hour), now.Add(2*time.Minute))
	if err != nil || !fresh {
		t.Errorf("new command: %v, %v", fresh, err)
	}
	st, err := s.SyncState()
	mustDo(t, err)
	if st.CommandSeqMax != 8 {
		t.Errorf("CommandSeqMax %d, want 8", st.CommandSeqMax)
	}
	// cmd-1 expired at +1m and was forgotten when cmd-3 was recorded.
	n := 0
	mustDo(t, s.view(func(tx *bboltTx) error {
		n = tx.Bucket(bucketCommands).Stats().KeyN
		return nil
	}))
	if n != 1 {
		t.Errorf("%d command ids kept, want 1 (expired ones forgotten)", n)
	}
	if _, err := s.RecordCommand("", 1, now.Add(time.Hour), now); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty id: %v", err)
	}
}
