package host

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Persistent key/value stores (RuntimeOptions.StateDir): each plugin's
// store is one file in the state directory, loaded when the plugin is
// first loaded and rewritten (to a temporary file, then renamed) at most
// once per flush interval after it changed, and when the runtime closes.
// A crash loses at most the last interval's changes. See RATIONALE.md,
// "Plugin state across restarts".

// DefaultStateFlushInterval is how often changed stores are written.
const DefaultStateFlushInterval = time.Second

// kvMagic starts every store file; the file ends with the CRC-32 (IEEE)
// of everything before it.
const kvMagic = "SLUICEKV1\n"

// kvFileName is the file of the store of the plugin (stage) name: the name
// escaped, so any name is one file inside the directory.
func kvFileName(dir, name string) string {
	return filepath.Join(dir, "kv-"+url.PathEscape(name)+".bin")
}

// encodeKV renders a store's map: sorted keys, so an unchanged store
// writes the same bytes.
func encodeKV(m map[string][]byte) []byte {
	keys := make([]string, 0, len(m))
	n := len(kvMagic) + 4
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 2*binary.MaxVarintLen32
	}
	sort.Strings(keys)
	b := make([]byte, 0, n)
	b = append(b, kvMagic...)
	for _, k := range keys {
		v := m[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

var errKVFile = errors.New("not a sluice key/value store file, or damaged")

// decodeKV parses a store file, checking its magic and checksum.
func decodeKV(b []byte) (map[string][]byte, int, error) {
	if len(b) < len(kvMagic)+4 || !bytes.HasPrefix(b, []byte(kvMagic)) {
		return nil, 0, errKVFile
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, 0, errKVFile
	}
	m := map[string][]byte{}
	total := 0
	r := body[len(kvMagic):]
	for len(r) > 0 {
		kn, n := binary.Uvarint(r)
		if n <= 0 || kn > uint64(len(r)-n) {
			return nil, 0, errKVFile
		}
		k := string(r[n : n+int(kn)])
		r = r[n+int(kn):]
		vn, n := binary.Uvarint(r)
		if n <= 0 || vn > uint64(len(r)-n) {
			return nil, 0, errKVFile
		}
		m[k] = append([]byte(nil), r[n:n+int(vn)]...)
		r = r[n+int(vn):]
		total += len(k) + int(vn)
	}
	if total > maxKVBytes {
		return nil, 0, fmt.Errorf("store of %d bytes exceeds %d", total, maxKVBytes)
	}
	return m, total, nil
}

// loadKV fills s from its file in dir. A missing file is an empty store;
// a damaged one is moved aside (name.bin.damaged) and logged, and the
// plugin starts with an empty store rather than not at all.
func (r *Runtime) loadKV(s *kvStore, name string) {
	path := kvFileName(r.stateDir, name)
	b, err := readKVFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		var m map[string][]byte
		var total int
		if m, total, err = decodeKV(b); err == nil {
			s.m, s.bytes = m, total
			return
		}
		_ = os.Rename(path, path+".damaged")
	}
	r.log.Warn("plugin state: cannot load the key/value store: starting empty", "plugin", name, "err", err)
}

// maxKVFile bounds a store file: the store's bound plus the framing of
// entries at least one byte each.
const maxKVFile = maxKVBytes*2 + 2*binary.MaxVarintLen32 + len(kvMagic) + 4

// readKVFile reads a store file that is a regular file of at most
// maxKVFile bytes (a FIFO or a device there would block or never end).
func readKVFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > int64(maxKVFile) {
		return nil, fmt.Errorf("not a regular file of at most %d bytes", maxKVFile)
	}
	return io.ReadAll(io.LimitReader(f, int64(maxKVFile)+1))
}

// flushKV writes every store that changed since it was last written.
func (r *Runtime) flushKV() {
	r.mu.Lock()
	stores := make(map[string]*kvStore, len(r.kv))
	for n, s := range r.kv {
		stores[n] = s
	}
	r.mu.Unlock()
	for name, s := range stores {
		s.mu.Lock()
		if !s.dirty {
			s.mu.Unlock()
			continue
		}
		b := encodeKV(s.m)
		s.dirty = false
		s.mu.Unlock()
		if err := writeFileAtomic(kvFileName(r.stateDir, name), b); err != nil {
			s.mu.Lock()
			s.dirty = true // try again next time
			s.mu.Unlock()
			r.log.Warn("plugin state: cannot save the key/value store", "plugin", name, "err", err)
		}
	}
}

// flushLoop writes changed stores every interval until stop is closed.
func (r *Runtime) flushLoop(every time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flushKV()
		case <-stop:
			r.flushKV()
			return
		}
	}
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, synced and renamed, so a reader sees the old file or the new
// one, never a part.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-kv-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// openStateDir creates the state directory and takes its lock, so two
// processes never write one directory's stores over each other.
func openStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host: plugin state dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host: plugin state dir %s: %w", dir, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("host: plugin state dir %s is in use by another process (%w): give each relay and agent its own", dir, err)
	}
	return f, nil
}
