package store

import (
	"encoding/binary"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// walkPages checks the structure of every page reachable from the root of
// tx with plain reads of the file: page ids, types and overflow within the
// file's high-water mark, every element, key and value inside its page,
// no page reached twice, bounded depth. bbolt trusts these fields when it
// reads through its memory map, so a damaged one can make it read outside
// the file; after this walk, bbolt's own check and every cursor stay
// inside the file. Run it inside a transaction (which keeps its pages from
// being reused) before anything else reads the file.
func walkPages(path string, tx *bolt.Tx) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	pageSize := tx.DB().Info().PageSize
	w := &pageWalker{
		f:         f,
		pageSize:  uint64(pageSize),
		highWater: uint64(tx.Size()) / uint64(pageSize),
	}
	w.seen = make([]uint64, w.highWater/64+1)
	if err := w.page(uint64(tx.Cursor().Bucket().Root()), 0); err != nil {
		return fmt.Errorf("%w: page structure: %w", ErrCorrupt, err)
	}
	return nil
}

const (
	boltElemSize     = 16
	boltBucketHeader = 16
	boltBucketLeaf   = 0x01
	maxTreeDepth     = 64
)

type pageWalker struct {
	f         *os.File
	pageSize  uint64
	highWater uint64
	seen      []uint64 // bitset of page ids
}

func (w *pageWalker) mark(id uint64) bool {
	word, bit := id/64, uint64(1)<<(id%64)
	if w.seen[word]&bit != 0 {
		return false
	}
	w.seen[word] |= bit
	return true
}

func (w *pageWalker) page(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d levels", id, maxTreeDepth)
	}
	if id < 2 || id >= w.highWater {
		return fmt.Errorf("page %d is outside 2..%d", id, w.highWater-1)
	}
	var hdr [boltPageHeader]byte
	if _, err := w.f.ReadAt(hdr[:], int64(id*w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr[0:]); got != id {
		return fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if id+overflow >= w.highWater {
		return fmt.Errorf("page %d with %d overflow pages runs past the last page %d", id, overflow, w.highWater-1)
	}
	for p := id; p <= id+overflow; p++ {
		if !w.mark(p) {
			return fmt.Errorf("page %d is reached twice", p)
		}
	}
	buf := make([]byte, (overflow+1)*w.pageSize)
	if _, err := w.f.ReadAt(buf, int64(id*w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	return w.elements(buf, depth, fmt.Sprintf("page %d", id))
}

// elements checks the elements of a branch or leaf page held in buf
// (header included) and walks what they point to.
func (w *pageWalker) elements(buf []byte, depth int, where string) error {
	if len(buf) < boltPageHeader {
		return fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(buf))
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if boltPageHeader+count*boltElemSize > len(buf) {
		return fmt.Errorf("%s: %d elements do not fit in %d bytes", where, count, len(buf))
	}
	span := func(i int, pos, n uint64) (uint64, error) {
		start := uint64(boltPageHeader+i*boltElemSize) + pos
		if start+n > uint64(len(buf)) {
			return 0, fmt.Errorf("%s: element %d points past the end of the page", where, i)
		}
		return start, nil
	}
	switch flags {
	case boltBranchPage:
		if count == 0 {
			return fmt.Errorf("%s: empty branch page", where)
		}
		for i := range count {
			e := buf[boltPageHeader+i*boltElemSize:]
			if _, err := span(i, uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))); err != nil {
				return err
			}
			if err := w.page(ne.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
		}
	case boltLeafPage:
		for i := range count {
			e := buf[boltPageHeader+i*boltElemSize:]
			eflags, pos := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:]))
			ksize, vsize := uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
			start, err := span(i, pos, ksize+vsize)
			if err != nil {
				return err
			}
			if eflags&boltBucketLeaf == 0 {
				continue
			}
			v := buf[start+ksize : start+ksize+vsize]
			if len(v) < boltBucketHeader {
				return fmt.Errorf("%s: element %d is a bucket with a %d-byte header", where, i, len(v))
			}
			if root := ne.Uint64(v); root != 0 {
				if err := w.page(root, depth+1); err != nil {
					return err
				}
				continue
			}
			inline := v[boltBucketHeader:]
			if len(inline) >= boltPageHeader && ne.Uint16(inline[8:]) != boltLeafPage {
				return fmt.Errorf("%s: element %d is an inline bucket that is not a leaf", where, i)
			}
			if err := w.elements(inline, depth+1, fmt.Sprintf("%s inline bucket %d", where, i)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: flags %#x, want a branch or leaf page", where, flags)
	}
	return nil
}
