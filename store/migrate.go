package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// migrateBatch is how many records the schema 3 migration converts per
// transaction: the memory it takes is bounded by a batch, not by the
// file.
const migrateBatch = 5000

// migrateProgress is the record of a schema 2 to 3 migration in progress,
// kept in the migrate_v3 bucket beside the converted buckets: the bucket
// being converted (its index in legacyAllowlist; past the last when all
// are), the last key converted in it, the entries converted so far and
// the multiset sum of their hashes, and the applied sequence and state
// sum of the schema 2 allowlist when the migration started.
type migrateProgress struct {
	phase   uint64
	lastKey []byte
	entries uint64
	sum     sum256
	applied uint64
	from    sum256
}

func encodeMigrateProgress(p *migrateProgress) []byte {
	e := encoder{}
	e.u64(p.phase)
	e.u16(uint16(len(p.lastKey)))
	e.raw(p.lastKey)
	e.u64(p.entries)
	e.raw(p.sum.bytes())
	e.u64(p.applied)
	e.raw(p.from.bytes())
	return seal(smallVersion, e.b)
}

func decodeMigrateProgress(rec []byte) (migrateProgress, error) {
	body, err := unsealVersion(rec, smallVersion)
	if err != nil {
		return migrateProgress{}, err
	}
	d := decoder{b: body}
	var p migrateProgress
	p.phase = d.u64()
	p.lastKey = bytes.Clone(d.take(int(d.u16())))
	p.entries = d.u64()
	if sum := d.take(32); sum != nil {
		p.sum, _ = sumFrom(sum)
	}
	p.applied = d.u64()
	if sum := d.take(32); sum != nil {
		p.from, _ = sumFrom(sum)
	}
	if p.phase > uint64(len(legacyAllowlist())) {
		d.fail("phase %d", p.phase)
	}
	return p, corrupt("migration progress", d.end())
}

// migrateV2toV3 converts the allowlist records of schema 2 (canonical
// encodings) to the compact records of schema 3, a batch per transaction:
// into new buckets under migrate_v3, in key order, with pages filled
// whole. The last transaction checks that the converted entries sum to
// the stored state sum, puts the new buckets in place of the old ones and
// sets schema 3: until then the file is a schema 2 file, which a crash at
// any point leaves intact, and the next Open carries on from the last
// batch. A snapshot stage of schema 2 is dropped (the transfer starts
// over).
func (s *Store) migrateV2toV3() error {
	for {
		done, err := s.migrateStep()
		if err != nil {
			return fmt.Errorf("migrate schema 2 to 3 (compact allowlist records): %w", err)
		}
		if done {
			return nil
		}
		if s.opts.migrateHook != nil {
			if err := s.opts.migrateHook(); err != nil {
				return fmt.Errorf("migrate schema 2 to 3 (compact allowlist records): %w", err)
			}
		}
	}
}

// migrateStep converts one batch, or finishes; done is true once the file
// has schema 3.
func (s *Store) migrateStep() (done bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		mb, p, err := s.openMigration(tx)
		if err != nil {
			return err
		}
		phases := legacyAllowlist()
		if p.phase == uint64(len(phases)) {
			done = true
			return s.finishMigration(tx, mb, &p)
		}
		ph := phases[p.phase]
		src, dst := tx.Bucket(ph.bucket), mb.Bucket(ph.bucket)
		if src == nil {
			return fmt.Errorf("%w: schema 2 file has no %s bucket", ErrCorrupt, ph.bucket)
		}
		dst.FillPercent = 1 // keys arrive in order and are never inserted between
		holders := mb.Bucket(bucketHolders)
		names := s.nameTable(tx)
		c := src.Cursor()
		k, v := c.First()
		if p.lastKey != nil {
			k, v = c.Seek(p.lastKey)
			if k != nil && bytes.Equal(k, p.lastKey) {
				k, v = c.Next()
			}
		}
		for n := 0; n < s.opts.migrateBatch && k != nil; n++ {
			rec, body, err := convertLegacy(ph, holders, names, k, v)
			if err != nil {
				return err
			}
			if err := dst.Put(bytes.Clone(k), rec); err != nil {
				return err
			}
			p.sum.add(entryHash(ph.tag, body))
			p.entries++
			p.lastKey = bytes.Clone(k)
			k, v = c.Next()
		}
		if k == nil {
			p.phase++
			p.lastKey = nil
		}
		return mb.Put(keyProgress, encodeMigrateProgress(&p))
	})
	return done, err
}

// convertLegacy turns one version 1 record of the bucket ph into its
// schema 3 record, and returns its canonical body too.
func convertLegacy(ph legacyBucket, holders *bolt.Bucket, names *nameTable, k, v []byte) (rec, body []byte, err error) {
	switch ph.tag {
	case tagCard:
		c, body, err := decodeLegacyCard(k, v)
		if err != nil {
			return nil, nil, err
		}
		name := ""
		if hv := holders.Get([]byte(c.HolderID)); hv != nil {
			r, err := parseHolderRec([]byte(c.HolderID), hv)
			if err != nil {
				return nil, nil, err
			}
			name = string(r.name)
		}
		doors, err := names.ids(c.Doors)
		if err != nil {
			return nil, nil, err
		}
		rec, err := encodeCard(&c, name, doors)
		return rec, body, err
	case tagHolder:
		h, body, err := decodeLegacyHolder(k, v)
		if err != nil {
			return nil, nil, err
		}
		rec, err := encodeHolder(&h)
		return rec, body, err
	default:
		r, body, err := decodeLegacyRevocation(k, v, ph.tag == tagRevokedHolder)
		if err != nil {
			return nil, nil, err
		}
		return encodeRevocation(&r), body, nil
	}
}

// openMigration returns the migrate_v3 bucket and its progress, creating
// them at the start. A damaged progress record, or one made when the
// schema 2 allowlist was another (a build that knows only schema 2 opened
// the file and applied changes in between), starts the migration over.
func (s *Store) openMigration(tx *bolt.Tx) (*bolt.Bucket, migrateProgress, error) {
	if _, err := tx.CreateBucketIfNotExists(bucketNames); err != nil {
		return nil, migrateProgress{}, err
	}
	applied, err := readApplied(tx)
	if err != nil {
		return nil, migrateProgress{}, err
	}
	sum, err := readSum(tx)
	if err != nil {
		return nil, migrateProgress{}, err
	}
	if mb := tx.Bucket(bucketMigrate); mb != nil {
		p, err := decodeMigrateProgress(mb.Get(keyProgress))
		switch {
		case err != nil:
			s.log.Warn("store: the schema 3 migration's progress record is damaged; starting it over", "path", s.path, "err", err)
		case p.applied != applied || p.from != sum:
			s.log.Warn("store: the allowlist changed since the schema 3 migration began; starting it over", "path", s.path)
		default:
			return mb, p, nil
		}
		if err := tx.DeleteBucket(bucketMigrate); err != nil {
			return nil, p, err
		}
	}
	mb, err := tx.CreateBucket(bucketMigrate)
	if err != nil {
		return nil, migrateProgress{}, err
	}
	for _, ph := range legacyAllowlist() {
		if _, err := mb.CreateBucket(ph.bucket); err != nil {
			return nil, migrateProgress{}, err
		}
	}
	return mb, migrateProgress{applied: applied, from: sum}, nil
}

// finishMigration checks the converted entries against the state sum and
// count of the schema 2 buckets and switches to them.
func (s *Store) finishMigration(tx *bolt.Tx, mb *bolt.Bucket, p *migrateProgress) error {
	stored, err := readSum(tx)
	if err != nil {
		return err
	}
	var old uint64
	for _, ph := range legacyAllowlist() {
		old += uint64(tx.Bucket(ph.bucket).Stats().KeyN)
	}
	switch {
	case p.entries != old:
		return fmt.Errorf("%w: %d entries converted, the schema 2 buckets hold %d", ErrCorrupt, p.entries, old)
	case p.sum != stored:
		return fmt.Errorf("%w: the converted entries do not sum to the stored state sum", ErrCorrupt)
	}
	for _, ph := range legacyAllowlist() {
		if err := tx.DeleteBucket(ph.bucket); err != nil {
			return fmt.Errorf("replace %s: %w", ph.bucket, err)
		}
		if err := tx.MoveBucket(ph.bucket, mb, nil); err != nil {
			return fmt.Errorf("replace %s: %w", ph.bucket, err)
		}
	}
	if err := tx.DeleteBucket(bucketMigrate); err != nil {
		return err
	}
	if tx.Bucket(bucketStage) != nil {
		s.log.Warn("store: dropping the snapshot stage of schema 2; the transfer starts over", "path", s.path)
		if err := tx.DeleteBucket(bucketStage); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
	}
	s.log.Info("store: migrated schema 2 to 3", "entries", p.entries)
	return tx.Bucket(bucketMeta).Put(keySchema, encodeU64(3))
}
