// Package filestore is the relay's default store: its records in memory,
// made durable in one append-only file in relay.data-dir (JSON lines, one
// per change, fsynced before the change is visible), rewritten in place
// when it grows to about twice what it holds. See RATIONALE.md.
package filestore

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/sluicemcp/sluice/engine/relay/store"
)

// File names inside the data directory.
const (
	// LogFile holds the records, one JSON line per change.
	LogFile = "relay-store.jsonl"
	// LockFile is held (flock) by the process that has the directory open.
	LockFile = "relay-store.lock"
)

const (
	format  = "sluice-relay-store"
	version = 1
	// compactSlack is how many superseded lines the file may hold beyond
	// the live records before it is rewritten.
	compactSlack = 1024
)

// Options configure Open. The zero value is valid.
type Options struct {
	// Logger receives a warning when a torn last line (a crash in the
	// middle of a write) is dropped (nil = discard).
	Logger *slog.Logger
}

// Store is a store.Store in one directory. Only one process may have a
// directory open at a time.
type Store struct {
	*store.Memory
	j    *journal
	lock *os.File
}

// Interface guards
var _ store.Store = (*Store)(nil)

// header is the file's first line.
type header struct {
	Format   string `json:"format"`
	Version  int    `json:"version"`
	Revision uint64 `json:"rev,omitempty"` // the store's revision when the file was written
}

// line is one change.
type line struct {
	Revision uint64          `json:"rev"`
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value,omitempty"`
	Deleted  bool            `json:"deleted,omitempty"`
}

// Open opens the store in dir, creating the directory (0700) and the file
// (0600) when they do not exist. It fails when another process has dir
// open, and when the file is damaged anywhere but in its last line.
func Open(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filestore: data-dir %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("filestore: data-dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, LogFile)
	recs, rev, lines, good, err := replay(path, log)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("filestore: open %s: %w", path, err)
	}
	j := &journal{dir: dir, path: path, f: f, lines: lines, compactAt: 2*len(recs) + compactSlack}
	if good == 0 {
		// A new (or empty) file: write its header.
		err = j.rewrite(nil, rev)
	} else {
		// Drop a torn last line, then append after what is good.
		if err = f.Truncate(good); err == nil {
			_, err = f.Seek(good, io.SeekStart)
		}
	}
	if err != nil {
		_ = f.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("filestore: %s: %w", path, err)
	}
	return &Store{Memory: store.NewJournaled(recs, rev, j), j: j, lock: lock}, nil
}

// Close implements store.Store: it also releases the directory.
func (s *Store) Close() error {
	err := s.Memory.Close()
	err = errors.Join(err, s.j.close(), s.lock.Close())
	return err
}

// replay reads path: the live records, the last revision, the number of
// lines, and the offset after the last good line (0 for no file, or one
// with no valid header).
func replay(path string, log *slog.Logger) (recs []store.Record, rev uint64, lines int, good int64, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("filestore: open %s: %w", path, err)
	}
	defer f.Close()
	live := make(map[string]store.Record)
	br := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for n := 1; ; n++ {
		b, rerr := br.ReadBytes('\n')
		if len(b) == 0 && rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.EOF {
			return nil, 0, 0, 0, fmt.Errorf("filestore: read %s: %w", path, rerr)
		}
		torn := rerr == io.EOF // no newline: the write of this line never finished
		perr := parseLine(b, n, live, &rev)
		if perr != nil || torn {
			if _, more := br.Peek(1); more == nil {
				return nil, 0, 0, 0, fmt.Errorf("filestore: %s line %d: %v (the file is damaged; restore it from a backup)", path, n, perr)
			}
			log.Warn("filestore: dropping a torn last line (the relay stopped in the middle of a write)", "file", path, "line", n)
			break
		}
		off += int64(len(b))
		lines++
	}
	recs = slices.Collect(func(yield func(store.Record) bool) {
		for _, r := range live {
			if !yield(r) {
				return
			}
		}
	})
	slices.SortFunc(recs, func(a, b store.Record) int { return cmp.Compare(a.Revision, b.Revision) })
	return recs, rev, lines, off, nil
}

// parseLine applies line n (1-based; line 1 is the header) to live.
func parseLine(b []byte, n int, live map[string]store.Record, rev *uint64) error {
	if n == 1 {
		var h header
		if err := json.Unmarshal(b, &h); err != nil || h.Format != format {
			return fmt.Errorf("not a %s file", format)
		}
		if h.Version != version {
			return fmt.Errorf("format version %d, this relay reads %d", h.Version, version)
		}
		*rev = h.Revision
		return nil
	}
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	if !store.ValidKey(l.Key) || l.Revision == 0 {
		return errors.New("bad key or revision")
	}
	if l.Deleted {
		delete(live, l.Key)
	} else {
		live[l.Key] = store.Record{Key: l.Key, Value: []byte(l.Value), Revision: l.Revision}
	}
	*rev = max(*rev, l.Revision)
	return nil
}

// journal appends changes to the file (store.Journal).
type journal struct {
	dir, path string
	f         *os.File
	lines     int // lines in the file, header included
	compactAt int // rewrite when lines reach this
	broken    error
}

// Append implements store.Journal: one line, fsynced, before the change is
// visible. When the file has grown to about twice the live records, it is
// rewritten with the records as they will be after c.
func (j *journal) Append(c store.Change, all iter.Seq[store.Record]) error {
	if j.broken != nil {
		return j.broken
	}
	l := line{Revision: c.Revision, Key: c.Key, Deleted: c.Deleted}
	if !c.Deleted {
		if !json.Valid(c.Value) {
			return fmt.Errorf("filestore: record %s: value is not JSON", c.Key)
		}
		l.Value = c.Value
	}
	if j.lines+1 >= j.compactAt {
		return j.compact(c, all)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := j.f.Write(b); err != nil {
		return j.fail(err)
	}
	if err := j.f.Sync(); err != nil {
		return j.fail(err)
	}
	j.lines++
	return nil
}

// fail marks the journal broken after a failed write: the file may hold
// part of a line, and every later change is refused (a restart drops the
// torn line).
func (j *journal) fail(err error) error {
	j.broken = fmt.Errorf("filestore: write %s: %w (restart the relay once the disk is fixed)", j.path, err)
	return j.broken
}

// compact rewrites the file with the live records after c.
func (j *journal) compact(c store.Change, all iter.Seq[store.Record]) error {
	var recs []store.Record
	for r := range all {
		if r.Key != c.Key {
			recs = append(recs, r)
		}
	}
	if !c.Deleted {
		recs = append(recs, c.Record)
	}
	slices.SortFunc(recs, func(a, b store.Record) int { return cmp.Compare(a.Revision, b.Revision) })
	if err := j.rewrite(recs, c.Revision); err != nil {
		return fmt.Errorf("filestore: rewrite %s: %w", j.path, err)
	}
	return nil
}

// rewrite replaces the file atomically (a temporary file, fsynced, renamed
// over it, the directory fsynced) with a header and recs, and appends to
// the new file from then on.
func (j *journal) rewrite(recs []store.Record, rev uint64) error {
	var buf bytes.Buffer
	h, _ := json.Marshal(header{Format: format, Version: version, Revision: rev})
	buf.Write(h)
	buf.WriteByte('\n')
	for _, r := range recs {
		b, err := json.Marshal(line{Revision: r.Revision, Key: r.Key, Value: r.Value})
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(j.dir, LogFile+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), j.path); err != nil {
		return err
	}
	ok = true
	if err := syncDir(j.dir); err != nil {
		_ = tmp.Close()
		return err
	}
	_ = j.f.Close()
	j.f = tmp
	j.lines = 1 + len(recs)
	j.compactAt = 2*len(recs) + compactSlack
	return nil
}

func (j *journal) close() error { return j.f.Close() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
