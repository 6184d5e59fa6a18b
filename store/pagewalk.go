package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"

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
	w := &pageWalker{pageFile: newPageFile(f, tx, uint64(tx.DB().Info().PageSize))}
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

// pageFile reads the pages of one transaction's tree with plain reads of
// the file, never through bbolt's memory map. While the transaction is
// open, bbolt reuses none of its pages, so what is read is what the
// transaction's cursors would see.
type pageFile struct {
	f         *os.File
	pageSize  uint64
	highWater uint64 // pages in the transaction's view of the file
}

func newPageFile(f *os.File, tx *bolt.Tx, pageSize uint64) pageFile {
	return pageFile{f: f, pageSize: pageSize, highWater: uint64(tx.Size()) / pageSize}
}

// read reads page id and its overflow pages into buf, grown as needed,
// and checks its header: the id it gives itself, and the overflow within
// the high-water mark. It returns the page, header included.
func (p *pageFile) read(buf []byte, id uint64) ([]byte, error) {
	if id < 2 || id >= p.highWater {
		return buf, fmt.Errorf("page %d is outside 2..%d", id, p.highWater-1)
	}
	buf = growBuf(buf, p.pageSize)
	if _, err := p.f.ReadAt(buf[:p.pageSize], int64(id*p.pageSize)); err != nil {
		return buf, fmt.Errorf("page %d: %w", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(buf[0:]); got != id {
		return buf, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(ne.Uint32(buf[12:]))
	if id+overflow >= p.highWater {
		return buf, fmt.Errorf("page %d with %d overflow pages runs past the last page %d", id, overflow, p.highWater-1)
	}
	if flags := ne.Uint16(buf[8:]); (flags == boltBranchPage || flags == boltLeafPage) && (overflow+1)*p.pageSize > maxNodeSpan {
		return buf, fmt.Errorf("page %d claims %d overflow pages, more than any record the store writes", id, overflow)
	}
	n := (overflow + 1) * p.pageSize
	if overflow > 0 {
		if uint64(cap(buf)) < n {
			buf = append(make([]byte, 0, n), buf[:p.pageSize]...)
		}
		buf = buf[:n]
		if _, err := p.f.ReadAt(buf[p.pageSize:n], int64(id*p.pageSize+p.pageSize)); err != nil {
			return buf, fmt.Errorf("page %d: %w", id, err)
		}
	}
	return buf[:n], nil
}

// maxNodeSpan bounds a branch or leaf page with its overflow pages, so
// that one damaged page header cannot make a check read most of the file
// into memory: far more than the largest record the store writes (a
// staged chunk's index run).
const maxNodeSpan = 16 << 20

// growBuf returns buf with length n, reusing its memory when it can.
func growBuf(buf []byte, n uint64) []byte {
	if uint64(cap(buf)) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// checkElements checks a branch or leaf page held in buf (header
// included, or an inline bucket's page): its type, its elements within
// buf, every key and value inside buf, a branch page not empty, and every
// bucket value long enough for a bucket header. bbolt's cursors read
// these fields without checks. It does not follow the page's children.
func checkElements(buf []byte) error {
	if len(buf) < boltPageHeader {
		return fmt.Errorf("%d bytes, shorter than a page header", len(buf))
	}
	ne := binary.NativeEndian
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if boltPageHeader+count*boltElemSize > len(buf) {
		return fmt.Errorf("%d elements do not fit in %d bytes", count, len(buf))
	}
	switch flags {
	case boltBranchPage:
		if count == 0 {
			return fmt.Errorf("empty branch page")
		}
		for i := range count {
			e := buf[boltPageHeader+i*boltElemSize:]
			if !elemFits(buf, i, uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))) {
				return fmt.Errorf("element %d points past the end of the page", i)
			}
		}
	case boltLeafPage:
		for i := range count {
			e := buf[boltPageHeader+i*boltElemSize:]
			eflags, pos := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:]))
			ksize, vsize := uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
			if !elemFits(buf, i, pos, ksize+vsize) {
				return fmt.Errorf("element %d points past the end of the page", i)
			}
			if eflags&boltBucketLeaf != 0 && vsize < boltBucketHeader {
				return fmt.Errorf("element %d is a bucket with a %d-byte header", i, vsize)
			}
		}
	default:
		return fmt.Errorf("flags %#x, want a branch or leaf page", flags)
	}
	return nil
}

// elemFits reports whether n bytes at pos, counted from element i as
// bbolt counts them, lie inside buf.
func elemFits(buf []byte, i int, pos, n uint64) bool {
	return uint64(boltPageHeader+i*boltElemSize)+pos+n <= uint64(len(buf))
}

// The accessors below read elements of a page checkElements passed.

func pageFlags(buf []byte) uint16 { return binary.NativeEndian.Uint16(buf[8:]) }
func pageCount(buf []byte) int    { return int(binary.NativeEndian.Uint16(buf[10:])) }

// branchElem returns the key and child page of element i of a branch page.
func branchElem(buf []byte, i int) (key []byte, child uint64) {
	ne := binary.NativeEndian
	off := boltPageHeader + i*boltElemSize
	e := buf[off:]
	start := off + int(ne.Uint32(e[0:]))
	return buf[start : start+int(ne.Uint32(e[4:]))], ne.Uint64(e[8:])
}

// leafElem returns the flags, key and value of element i of a leaf page.
func leafElem(buf []byte, i int) (flags uint32, key, value []byte) {
	ne := binary.NativeEndian
	off := boltPageHeader + i*boltElemSize
	e := buf[off:]
	start := off + int(ne.Uint32(e[4:]))
	ksize, vsize := int(ne.Uint32(e[8:])), int(ne.Uint32(e[12:]))
	return ne.Uint32(e[0:]), buf[start : start+ksize], buf[start+ksize : start+ksize+vsize]
}

// searchBranch returns the element of a branch page bbolt's cursor
// descends to when it looks for key: the same binary search, so that the
// page checked is the page bbolt reads, whatever order a damaged page's
// keys are in.
func searchBranch(buf []byte, key []byte) int {
	exact := false
	i := sort.Search(pageCount(buf), func(i int) bool {
		k, _ := branchElem(buf, i)
		c := bytes.Compare(k, key)
		if c == 0 {
			exact = true
		}
		return c != -1
	})
	if !exact && i > 0 {
		i--
	}
	return i
}

// searchLeaf returns the element of a leaf page bbolt's cursor stops at
// when it looks for key: the first whose key is not less than key.
func searchLeaf(buf []byte, key []byte) int {
	return sort.Search(pageCount(buf), func(i int) bool {
		_, k, _ := leafElem(buf, i)
		return bytes.Compare(k, key) != -1
	})
}

// bucketRoot reads a bucket value (checkElements made sure it holds a
// header): the root page of the bucket, or 0 and the bucket's inline page.
func bucketRoot(v []byte) (root uint64, inline []byte) {
	root = binary.NativeEndian.Uint64(v)
	if root == 0 {
		inline = v[boltBucketHeader:]
	}
	return root, inline
}

// checkInline checks an inline bucket's page: bbolt reads it as a leaf.
func checkInline(inline []byte) error {
	if len(inline) >= boltPageHeader && pageFlags(inline) != boltLeafPage {
		return fmt.Errorf("an inline bucket that is not a leaf")
	}
	return checkElements(inline)
}

type pageWalker struct {
	pageFile
	seen []uint64 // bitset of page ids
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
	buf, err := w.read(nil, id)
	if err != nil {
		return err
	}
	for p := id; p < id+uint64(len(buf))/w.pageSize; p++ {
		if !w.mark(p) {
			return fmt.Errorf("page %d is reached twice", p)
		}
	}
	return w.elements(buf, depth, fmt.Sprintf("page %d", id))
}

// elements checks the elements of a branch or leaf page held in buf
// (header included) and walks what they point to.
func (w *pageWalker) elements(buf []byte, depth int, where string) error {
	if err := checkElements(buf); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	switch pageFlags(buf) {
	case boltBranchPage:
		for i := range pageCount(buf) {
			_, child := branchElem(buf, i)
			if err := w.page(child, depth+1); err != nil {
				return err
			}
		}
	case boltLeafPage:
		for i := range pageCount(buf) {
			flags, _, v := leafElem(buf, i)
			if flags&boltBucketLeaf == 0 {
				continue
			}
			root, inline := bucketRoot(v)
			if root != 0 {
				if err := w.page(root, depth+1); err != nil {
					return err
				}
				continue
			}
			if len(inline) >= boltPageHeader && pageFlags(inline) != boltLeafPage {
				return fmt.Errorf("%s: element %d is an inline bucket that is not a leaf", where, i)
			}
			if err := w.elements(inline, depth+1, fmt.Sprintf("%s inline bucket %d", where, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
