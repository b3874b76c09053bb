// Package lmdb reads LMDB databases (the format of liblmdb 0.9, as py-lmdb writes it) in pure
// Go, read-only: enough to import UNITER's img_db feature stores without cgo. It reads the
// data file with positioned reads; it takes no lock, so the database must not be written
// while it is read.
//
// Layout (liblmdb mdb.c): pages of psize bytes; pages 0 and 1 are meta pages, the one with
// the larger transaction ID is current; it holds the root of the main B+tree. A page starts
// with a 16-byte header (page number, pad, flags, lower/upper bounds or, for overflow pages,
// their count) followed by 16-bit node offsets. A node has a 8-byte header (lo, hi, flags,
// key size), then the key, then the value; on branch pages lo|hi<<16|flags<<32 is the child
// page, on leaf pages lo|hi<<16 is the value size and F_BIGDATA puts the value on overflow
// pages whose number follows the key.
package lmdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrCorrupt reports a file that is not an LMDB database this reader understands.
var ErrCorrupt = errors.New("lmdb: not a readable LMDB database")

const (
	magic      = 0xBEEFC0DE
	dataVer    = 1
	pageHeader = 16
	nodeHeader = 8

	pBranch   = 0x01
	pLeaf     = 0x02
	pOverflow = 0x04
	pMeta     = 0x08
	pLeaf2    = 0x20

	fBigData = 0x01
	fSubData = 0x02
	fDupData = 0x04

	dbDupSort    = 0x04
	dbReverseKey = 0x02

	invalidPage = ^uint64(0)
	maxDepth    = 64
)

// DB is an open database file.
type DB struct {
	f       *os.File
	size    int64
	psize   uint64
	root    uint64
	depth   int
	entries uint64
}

// Open opens path: an LMDB environment folder (holding data.mdb) or the data file itself.
func Open(path string) (*DB, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		path = filepath.Join(path, "data.mdb")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	db, err := newDB(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}

func newDB(f *os.File) (*DB, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	db := &DB{f: f, size: st.Size()}
	// The page size is in meta page 0 (mm_psize = mm_dbs[FREE_DBI].md_pad, at byte 40).
	head := make([]byte, 160)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	psize := uint64(binary.LittleEndian.Uint32(head[40:]))
	if psize < 512 || psize > 1<<16 || psize&(psize-1) != 0 {
		return nil, fmt.Errorf("%w: page size %d", ErrCorrupt, psize)
	}
	db.psize = psize
	var best *meta
	for pg := range uint64(2) {
		m, err := db.readMeta(pg)
		if err != nil {
			return nil, err
		}
		if best == nil || m.txnid > best.txnid {
			best = m
		}
	}
	if best.mainFlags&(dbDupSort|dbReverseKey) != 0 {
		return nil, fmt.Errorf("%w: main database flags %#x (dupsort or reverse keys) are not supported", ErrCorrupt, best.mainFlags)
	}
	db.root, db.depth, db.entries = best.root, best.depth, best.entries
	if db.depth > maxDepth {
		return nil, fmt.Errorf("%w: tree depth %d", ErrCorrupt, db.depth)
	}
	return db, nil
}

type meta struct {
	txnid, root, entries uint64
	depth                int
	mainFlags            uint16
}

func (db *DB) readMeta(pg uint64) (*meta, error) {
	p := make([]byte, 152)
	if _, err := db.f.ReadAt(p, int64(pg*db.psize)); err != nil {
		return nil, fmt.Errorf("%w: meta page %d: %v", ErrCorrupt, pg, err)
	}
	if flags := binary.LittleEndian.Uint16(p[10:]); flags&pMeta == 0 {
		return nil, fmt.Errorf("%w: page %d is not a meta page", ErrCorrupt, pg)
	}
	m := p[pageHeader:]
	if binary.LittleEndian.Uint32(m[0:]) != magic {
		return nil, fmt.Errorf("%w: bad magic on meta page %d", ErrCorrupt, pg)
	}
	if v := binary.LittleEndian.Uint32(m[4:]); v != dataVer {
		return nil, fmt.Errorf("%w: data format version %d, this reader knows %d", ErrCorrupt, v, dataVer)
	}
	// mm_dbs[MAIN_DBI] starts at 24 + 48: pad u32, flags u16, depth u16, branch, leaf, overflow
	// pages, entries, root (u64 each); then mm_last_pg and mm_txnid.
	main := m[24+48:]
	return &meta{mainFlags: binary.LittleEndian.Uint16(main[4:]), depth: int(binary.LittleEndian.Uint16(main[6:])),
		entries: binary.LittleEndian.Uint64(main[32:]), root: binary.LittleEndian.Uint64(main[40:]),
		txnid: binary.LittleEndian.Uint64(m[24+96+8:])}, nil
}

// Close closes the file.
func (db *DB) Close() error { return db.f.Close() }

// Len is the number of entries of the main database.
func (db *DB) Len() int { return int(db.entries) }

// page is one page's bytes.
type page struct {
	no    uint64
	b     []byte
	flags uint16
}

func (db *DB) page(no uint64) (*page, error) {
	off := int64(no) * int64(db.psize)
	if no == invalidPage || off < 0 || off+int64(db.psize) > db.size || no < 2 {
		return nil, fmt.Errorf("%w: page %d outside the file", ErrCorrupt, no)
	}
	b := make([]byte, db.psize)
	if _, err := db.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("%w: page %d: %v", ErrCorrupt, no, err)
	}
	if got := binary.LittleEndian.Uint64(b); got != no {
		return nil, fmt.Errorf("%w: page %d says it is page %d", ErrCorrupt, no, got)
	}
	return &page{no: no, b: b, flags: binary.LittleEndian.Uint16(b[10:])}, nil
}

func (p *page) numKeys() (int, error) {
	lower := int(binary.LittleEndian.Uint16(p.b[12:]))
	if lower < pageHeader || lower > len(p.b) || (lower-pageHeader)%2 != 0 {
		return 0, fmt.Errorf("%w: page %d has a bad lower bound %d", ErrCorrupt, p.no, lower)
	}
	return (lower - pageHeader) / 2, nil
}

// node is one node of a page.
type node struct {
	lo, hi, flags uint16
	key           []byte
	rest          []byte // the bytes after the key: the value, or the overflow page number
}

func (p *page) node(i int) (node, error) {
	off := int(binary.LittleEndian.Uint16(p.b[pageHeader+2*i:]))
	if off < pageHeader || off+nodeHeader > len(p.b) {
		return node{}, fmt.Errorf("%w: page %d node %d at offset %d", ErrCorrupt, p.no, i, off)
	}
	b := p.b[off:]
	n := node{lo: binary.LittleEndian.Uint16(b), hi: binary.LittleEndian.Uint16(b[2:]), flags: binary.LittleEndian.Uint16(b[4:])}
	ks := int(binary.LittleEndian.Uint16(b[6:]))
	if nodeHeader+ks > len(b) {
		return node{}, fmt.Errorf("%w: page %d node %d key runs past the page", ErrCorrupt, p.no, i)
	}
	n.key, n.rest = b[nodeHeader:nodeHeader+ks], b[nodeHeader+ks:]
	return n, nil
}

func (n node) child() uint64 { return uint64(n.lo) | uint64(n.hi)<<16 | uint64(n.flags)<<32 }

// value reads a leaf node's value, from the page or its overflow pages.
func (db *DB) value(p *page, n node) ([]byte, error) {
	if n.flags&(fSubData|fDupData) != 0 {
		return nil, fmt.Errorf("%w: sub-databases and duplicate keys are not supported", ErrCorrupt)
	}
	size := uint64(n.lo) | uint64(n.hi)<<16
	if n.flags&fBigData == 0 {
		if size > uint64(len(n.rest)) {
			return nil, fmt.Errorf("%w: page %d: value runs past the page", ErrCorrupt, p.no)
		}
		return bytes.Clone(n.rest[:size]), nil
	}
	if len(n.rest) < 8 {
		return nil, fmt.Errorf("%w: page %d: truncated overflow reference", ErrCorrupt, p.no)
	}
	ov := binary.LittleEndian.Uint64(n.rest)
	first, err := db.page(ov)
	if err != nil {
		return nil, err
	}
	if first.flags&pOverflow == 0 {
		return nil, fmt.Errorf("%w: page %d is not an overflow page", ErrCorrupt, ov)
	}
	pages := uint64(binary.LittleEndian.Uint32(first.b[12:]))
	if size > pages*db.psize-pageHeader {
		return nil, fmt.Errorf("%w: overflow value of %d bytes on %d pages", ErrCorrupt, size, pages)
	}
	off := int64(ov)*int64(db.psize) + pageHeader
	if off+int64(size) > db.size {
		return nil, fmt.Errorf("%w: overflow value runs past the file", ErrCorrupt)
	}
	out := make([]byte, size)
	if _, err := db.f.ReadAt(out, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: overflow page %d: %v", ErrCorrupt, ov, err)
	}
	return out, nil
}

// Get returns the value of key, or ok false when there is none.
func (db *DB) Get(key []byte) (value []byte, ok bool, err error) {
	if db.root == invalidPage {
		return nil, false, nil
	}
	no := db.root
	for depth := 0; ; depth++ {
		if depth > db.depth || depth > maxDepth {
			return nil, false, fmt.Errorf("%w: tree deeper than its meta says (%d)", ErrCorrupt, db.depth)
		}
		p, err := db.page(no)
		if err != nil {
			return nil, false, err
		}
		n, err := p.numKeys()
		if err != nil {
			return nil, false, err
		}
		switch {
		case p.flags&pBranch != 0:
			// The last child whose key ≤ key; node 0's key is empty (−∞).
			lo, hi := 1, n-1
			pick := 0
			for lo <= hi {
				mid := (lo + hi) / 2
				nd, err := p.node(mid)
				if err != nil {
					return nil, false, err
				}
				if bytes.Compare(nd.key, key) <= 0 {
					pick, lo = mid, mid+1
				} else {
					hi = mid - 1
				}
			}
			nd, err := p.node(pick)
			if err != nil {
				return nil, false, err
			}
			no = nd.child()
		case p.flags&pLeaf != 0 && p.flags&pLeaf2 == 0:
			lo, hi := 0, n-1
			for lo <= hi {
				mid := (lo + hi) / 2
				nd, err := p.node(mid)
				if err != nil {
					return nil, false, err
				}
				switch c := bytes.Compare(nd.key, key); {
				case c == 0:
					v, err := db.value(p, nd)
					return v, err == nil, err
				case c < 0:
					lo = mid + 1
				default:
					hi = mid - 1
				}
			}
			return nil, false, nil
		default:
			return nil, false, fmt.Errorf("%w: page %d has flags %#x where a tree page was expected", ErrCorrupt, p.no, p.flags)
		}
	}
}

// ForEach calls fn for every entry in key order; fn's slices are its own. An error from fn
// stops the walk and is returned.
func (db *DB) ForEach(fn func(key, value []byte) error) error {
	if db.root == invalidPage {
		return nil
	}
	seen := map[uint64]bool{}
	return db.walk(db.root, 0, seen, fn)
}

func (db *DB) walk(no uint64, depth int, seen map[uint64]bool, fn func(key, value []byte) error) error {
	if depth > db.depth || depth > maxDepth || seen[no] {
		return fmt.Errorf("%w: the tree loops or is deeper than its meta says", ErrCorrupt)
	}
	seen[no] = true
	p, err := db.page(no)
	if err != nil {
		return err
	}
	n, err := p.numKeys()
	if err != nil {
		return err
	}
	for i := range n {
		nd, err := p.node(i)
		if err != nil {
			return err
		}
		switch {
		case p.flags&pBranch != 0:
			if err := db.walk(nd.child(), depth+1, seen, fn); err != nil {
				return err
			}
		case p.flags&pLeaf != 0 && p.flags&pLeaf2 == 0:
			v, err := db.value(p, nd)
			if err != nil {
				return err
			}
			if err := fn(bytes.Clone(nd.key), v); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: page %d has flags %#x where a tree page was expected", ErrCorrupt, p.no, p.flags)
		}
	}
	return nil
}
