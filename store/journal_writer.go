package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// run is the writer goroutine.
func (j *Journal) run() {
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		j.mu.Lock()
		closing := j.closing
		j.mu.Unlock()
		now := time.Now()
		switch {
		case closing:
			// Write everything that waits, batch after batch, until done
			// or a write fails.
			j.attempt(now)
			for j.waiting() && !j.failing {
				j.attempt(time.Now())
			}
			j.recordLoss(false)
			return
		case j.due(now):
			j.attempt(now)
		case j.failing:
			// Waiting for the next attempt: keep the count of what a crash
			// would lose up to date.
			j.recordLoss(false)
		}
		if !j.reserveOK && !j.failing && !now.Before(j.reserveAt) {
			j.remakeReserve(now)
		}
		var next time.Time
		consider := func(t time.Time) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if at, ok := j.readyAt(); ok {
			// Lingering entries, or a batch limit left some waiting; while
			// failing, not before the next attempt unless a caller waits.
			if j.failing && at.Before(j.retryAt) && !j.urgent() {
				at = j.retryAt
			}
			consider(at)
		}
		if !j.reserveOK && !j.failing {
			consider(j.reserveAt)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-j.wake:
		case <-timer.C:
		}
	}
}

// waiting reports whether anything is to be written.
func (j *Journal) waiting() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.queue) > 0 || j.shedRec.n > 0 || j.lost.n > 0 || j.reserveNotice || j.lossUnknown != ""
}

// due reports whether to write now: an entry whose caller waits is
// queued, or something waits, the journal is not backing off and the
// oldest entry has lingered long enough (see readyAt).
func (j *Journal) due(now time.Time) bool {
	at, ok := j.readyAt()
	if !ok {
		return false
	}
	if j.failing && now.Before(j.retryAt) {
		return j.urgent()
	}
	return !now.Before(at)
}

// urgent reports whether an entry whose caller waits is queued.
func (j *Journal) urgent() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.ContainsFunc(j.queue, func(e queued) bool { return e.Done != nil })
}

// readyAt returns when what waits is to be written: at once when a caller
// waits for an entry or the journal has notices of its own; otherwise when
// the oldest entry has waited Linger, so that a grant that follows within
// it shares the commit (one commit on the grant's path). ok is false when
// nothing waits.
func (j *Journal) readyAt() (at time.Time, ok bool) {
	if !j.waiting() {
		return time.Time{}, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.queue) == 0 || j.closing || slices.ContainsFunc(j.queue, func(e queued) bool { return e.Done != nil }) {
		return time.Time{}, true
	}
	return j.queue[0].at.Add(j.o.Linger), true
}

// ownEvent is one of the journal's own events, at the journal's clock.
func (j *Journal) ownEvent(r Reason, detail string) Event {
	return normalizeEvent(Event{Time: j.o.Now(), Clock: j.o.Clock(), BootID: j.o.BootID, Door: j.o.Door,
		Type: TypeSystem, Reason: r, Detail: detail})
}

// attempt writes one batch: the journal's own notices, then the entries
// waiting, up to the store's MaxBatch events (at least one entry).
func (j *Journal) attempt(now time.Time) {
	j.mu.Lock()
	j.lost.merge(j.shedRec)
	if j.shedRec.n > 0 && j.lossText == "" {
		j.lossText = fmt.Sprintf("dropped from memory while the journal could not write (it holds at most %d)", j.o.MaxPending)
	}
	j.shedRec = lossRecord{}
	take, n := 0, 0
	for take < len(j.queue) && (take == 0 || n+len(j.queue[take].Events) <= j.st.opts.MaxBatch) {
		n += len(j.queue[take].Events)
		take++
	}
	batch := slices.Clone(j.queue[:take])
	if take > 0 {
		j.inflight = batch[take-1].id
	}
	j.mu.Unlock()

	var own []Event
	if j.lost.n > 0 {
		own = append(own, j.ownEvent(ReasonEventsLost,
			fmt.Sprintf("%d events lost (%s): %s", j.lost.n, j.lost.span(), j.lossText)))
	}
	if j.lossUnknown != "" {
		own = append(own, j.ownEvent(ReasonEventsLost, j.lossUnknown))
	}
	if j.failing {
		j.mu.Lock()
		late := j.pending
		j.mu.Unlock()
		own = append(own, j.ownEvent(ReasonJournalFault,
			fmt.Sprintf("the journal could not write from %s to %s: %s; the %d events held in memory meanwhile are written from now on, with the times they happened",
				j.failedAt.UTC().Format(time.RFC3339), j.o.Now().UTC().Format(time.RFC3339), j.firstErr, late)))
	}
	if j.reserveNotice {
		own = append(own, j.ownEvent(ReasonJournalFault,
			fmt.Sprintf("the disk is full: the %d-byte reserve was released and the journal writes into it; free space on the data directory's disk", j.o.Reserve)))
	}
	if len(own) == 0 && len(batch) == 0 {
		return
	}
	events := slices.Clone(own)
	var changes []StateChange
	for _, e := range batch {
		changes = append(changes, e.Changes...)
		events = append(events, e.Events...)
	}
	err := j.commitWatched(events, changes)
	if err != nil && errors.Is(err, syscall.ENOSPC) && j.o.Reserve > 0 && j.reserveOK {
		rerr := j.releaseReserve()
		if rerr == nil {
			j.reserveNotice = true
			j.log.Warn("journal: the disk is full; released the reserve", "bytes", j.o.Reserve)
			j.setHealth(func(h *JournalHealth) { h.Reserve = true })
			j.attempt(now)
			return
		}
		j.log.Error("journal: the disk is full and the reserve cannot be released", "err", rerr)
	}
	if err != nil {
		j.failed(now, err)
		return
	}
	j.written(now, batch, events, len(own))
}

// commitWatched commits while a watchdog keeps the loss record up to date
// if the commit hangs: after HangCheck, and every HangCheck after, it
// counts what waits, the batch in flight included. The watchdog costs a
// timer while commits are quick, and it has stopped when commitWatched
// returns, so that the writer alone touches the loss record again.
func (j *Journal) commitWatched(events []Event, changes []StateChange) error {
	if j.o.HangCheck <= 0 {
		return j.st.commitJournal(events, changes)
	}
	var (
		mu      sync.Mutex // held while the watchdog counts, and to stop it
		stopped bool
		t       *time.Timer
	)
	mu.Lock() // t is set before the watchdog can read it
	t = time.AfterFunc(j.o.HangCheck, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		j.log.Warn("journal: a commit is taking long; counting what waits", "after", j.o.HangCheck)
		j.recordLoss(false)
		t.Reset(j.o.HangCheck)
	})
	mu.Unlock()
	err := j.st.commitJournal(events, changes)
	mu.Lock()
	stopped = true
	t.Stop()
	mu.Unlock()
	return err
}

// written finishes a batch that was committed.
func (j *Journal) written(now time.Time, batch []queued, events []Event, own int) {
	j.mu.Lock()
	j.queue = slices.DeleteFunc(j.queue, func(e queued) bool {
		if e.id > j.inflight {
			return false
		}
		j.pending -= len(e.Events)
		return true
	})
	j.inflight = 0
	j.mu.Unlock()
	if j.failing {
		j.log.Warn("journal: writing again", "since", j.failedAt)
	}
	j.failing, j.retryGap, j.firstErr = false, 0, ""
	forget := j.lossUnknown != ""
	j.lost, j.lossText, j.reserveNotice, j.lossUnknown = lossRecord{}, "", false, ""
	if j.onDisk.n != 0 || forget {
		j.recordLoss(forget)
	}
	j.setHealth(func(h *JournalHealth) {
		if !h.OK {
			h.OK, h.Err, h.Since = true, "", now
		}
	})
	off := own
	for _, e := range batch {
		if e.Done != nil {
			e.Done(slices.Clone(events[off:off+len(e.Events)]), nil)
		}
		off += len(e.Events)
	}
	if j.o.OnStored != nil {
		j.o.OnStored(events)
	}
}

// failed handles a batch that could not be written: entries whose caller
// waits fail now; the rest wait for the next attempt, and the loss record
// counts them.
func (j *Journal) failed(now time.Time, err error) {
	if !j.failing {
		j.failing, j.failedAt, j.firstErr = true, j.o.Now(), oneLineErr(err)
		j.log.Error("journal: cannot write; events are held in memory and counted on disk until it can", "err", err)
	} else {
		j.log.Debug("journal: still cannot write", "err", err)
	}
	j.retryGap = min(max(2*j.retryGap, j.o.RetryMin), j.o.RetryMax)
	j.retryAt = now.Add(j.retryGap)
	// Every entry whose caller waits fails now, in the batch or behind it:
	// the caller decides what to record instead, and does not wait for a
	// disk that may not come back.
	var refused []queued
	j.mu.Lock()
	j.inflight = 0
	j.queue = slices.DeleteFunc(j.queue, func(e queued) bool {
		if e.Done != nil {
			refused = append(refused, e)
			j.pending -= len(e.Events)
			return true
		}
		return false
	})
	j.mu.Unlock()
	j.setHealth(func(h *JournalHealth) {
		if h.OK {
			h.OK, h.Since = false, now
		}
		h.Err = oneLineErr(err)
	})
	j.recordLoss(false)
	for _, e := range refused {
		e.Done(nil, fmt.Errorf("store: journal: %w", err))
	}
}

func oneLineErr(err error) string {
	return string(bytes.ReplaceAll([]byte(err.Error()), []byte("\n"), []byte("; ")))
}

// setHealth changes the health under the lock and tells the consumer of
// HealthChanges when OK, Reserve or the counts changed.
func (j *Journal) setHealth(fn func(h *JournalHealth)) {
	j.mu.Lock()
	old := j.health
	fn(&j.health)
	j.health.Pending = j.pending
	j.health.Lost = j.lost.n + j.shedRec.n
	j.health.Recorded = j.onDisk.n
	changed := j.health != old
	j.mu.Unlock()
	if changed {
		select {
		case j.changes <- struct{}{}:
		default:
		}
	}
}

// recordLoss writes to the loss record what would be lost if the service
// ended now: the events held in memory and those already known lost.
// force writes it even when the count is what the file is known to hold
// (a damaged record is replaced).
func (j *Journal) recordLoss(force bool) {
	j.mu.Lock()
	rec := j.lost
	rec.merge(j.shedRec)
	for _, e := range j.queue {
		for _, ev := range e.Events {
			rec.add(ev.Time)
		}
	}
	j.mu.Unlock()
	if rec == j.onDisk && !force {
		return
	}
	if err := writeLossRecord(j.lossFile, rec); err != nil {
		j.log.Error("journal: cannot update the loss record", "err", err, "count", rec.n)
		return
	}
	j.onDisk = rec
	j.setHealth(func(*JournalHealth) {})
}

// commitJournal writes changes and events in one transaction, appending the
// events to the chain. events must be normalized; their Seq, Prev and Hash
// are set in place.
func (s *Store) commitJournal(events []Event, changes []StateChange) error {
	if s.journalHook != nil {
		if err := s.journalHook(); err != nil {
			return err
		}
	}
	return s.update(func(tx *bolt.Tx) error {
		for i := range changes {
			if err := changes[i].apply(tx); err != nil {
				return err
			}
		}
		return appendChain(tx, events)
	})
}

// Loss record file.

type lossRead struct {
	rec lossRecord
	err error // the record is damaged
}

// openLossFile opens (or makes) the preallocated loss record file and
// reads the record a previous run left.
func openLossFile(path string) (*os.File, lossRead, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, lossRead{}, fmt.Errorf("loss record: %w", err)
	}
	buf := make([]byte, lossFileSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, lossRead{}, fmt.Errorf("loss record %s: %w", path, err)
	}
	var prev lossRead
	if n > 0 {
		prev.rec, prev.err = decodeLossRecord(buf[:min(n, lossRecordLen)])
	}
	if n < lossFileSize {
		// Preallocate, so that rewriting the record never needs new space;
		// what the previous run left stays until it is recorded.
		clear(buf)
		if _, err := f.WriteAt(buf[n:], int64(n)); err != nil {
			f.Close()
			return nil, lossRead{}, fmt.Errorf("loss record %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, lossRead{}, fmt.Errorf("loss record %s: %w", path, err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, lossRead{}, fmt.Errorf("loss record %s: %w", path, err)
		}
	}
	return f, prev, nil
}

// decodeLossRecord reads a record: all zeros is none; anything else must
// carry the magic and a good checksum.
func decodeLossRecord(b []byte) (lossRecord, error) {
	if !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		return lossRecord{}, nil
	}
	if len(b) < lossRecordLen || string(b[:8]) != lossMagic {
		return lossRecord{}, fmt.Errorf("%w: loss record: bad header", ErrCorrupt)
	}
	body := b[:lossRecordLen-4]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[lossRecordLen-4:]) {
		return lossRecord{}, fmt.Errorf("%w: loss record: checksum mismatch", ErrCorrupt)
	}
	var r lossRecord
	r.n = binary.BigEndian.Uint64(body[8:])
	r.first = nanoTime(int64(binary.BigEndian.Uint64(body[16:])))
	r.last = nanoTime(int64(binary.BigEndian.Uint64(body[24:])))
	return r, nil
}

func encodeLossRecord(r lossRecord) []byte {
	b := make([]byte, 0, lossRecordLen)
	b = append(b, lossMagic...)
	b = binary.BigEndian.AppendUint64(b, r.n)
	b = binary.BigEndian.AppendUint64(b, uint64(timeNano(r.first)))
	b = binary.BigEndian.AppendUint64(b, uint64(timeNano(r.last)))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// timeNano and nanoTime encode a time in the loss record: nanoseconds
// since 1970, 0 for the zero time (events with an unusable clock).
func timeNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanoTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// writeLossRecord overwrites the record in place and syncs it.
func writeLossRecord(f *os.File, r lossRecord) error {
	b := make([]byte, lossRecordLen)
	if r.n > 0 {
		b = encodeLossRecord(r)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// Reserve file.

// makeReserve makes sure the reserve file is whole; with no reserve wanted
// it removes one left from an earlier configuration. It reports whether
// the reserve is in place.
func (j *Journal) makeReserve() bool {
	path := filepath.Join(j.o.Dir, reserveFileName)
	if j.o.Reserve == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("journal: remove the unused reserve file", "err", err)
		}
		return true
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() >= j.o.Reserve {
		return true
	}
	if free, ok := freeBytes(j.o.Dir); ok && free < 2*uint64(j.o.Reserve) {
		return false
	}
	if err := writeReserve(path, j.o.Reserve); err != nil {
		j.log.Warn("journal: cannot make the reserve file", "bytes", j.o.Reserve, "err", err)
		_ = os.Remove(path)
		return false
	}
	return true
}

func writeReserve(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zero := make([]byte, 64<<10)
	for left := size; left > 0; left -= int64(len(zero)) {
		if _, err := f.Write(zero[:min(left, int64(len(zero)))]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// remakeReserve tries again to make a released reserve.
func (j *Journal) remakeReserve(now time.Time) {
	j.reserveOK = j.makeReserve()
	if !j.reserveOK {
		j.reserveAt = now.Add(j.o.ReserveCheck)
		return
	}
	j.log.Info("journal: the reserve file is in place again", "bytes", j.o.Reserve)
	j.setHealth(func(h *JournalHealth) { h.Reserve = false })
}

func (j *Journal) releaseReserve() error {
	err := os.Remove(filepath.Join(j.o.Dir, reserveFileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	j.reserveOK = false
	j.reserveAt = time.Now().Add(j.o.ReserveCheck)
	return nil
}
