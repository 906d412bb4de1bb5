package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/relay/store/storetest"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	dirs := map[store.Store]string{}
	storetest.Run(t, storetest.Suite{
		Open: func(t *testing.T) store.Store {
			dir := t.TempDir()
			s := open(t, dir)
			dirs[s] = dir
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n := open(t, dirs[s])
			dirs[n] = dirs[s]
			return n
		},
	})
}

// TestTornLastLine: a crash in the middle of a write leaves part of a line;
// the store opens without it and keeps everything before it.
func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	if _, err := s.Create(ctx, "tunnel.a", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	path := filepath.Join(dir, LogFile)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"rev":2,"key":"tunnel.b","val`)
	_ = f.Close()

	s = open(t, dir)
	if _, err := s.Get(ctx, "tunnel.a"); err != nil {
		t.Fatalf("record before the torn line: %v", err)
	}
	if _, err := s.Get(ctx, "tunnel.b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the torn record: %v, want ErrNotFound", err)
	}
	// New lines go after the good ones, not after the torn bytes.
	if _, err := s.Create(ctx, "tunnel.c", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = open(t, dir)
	if _, err := s.Get(ctx, "tunnel.c"); err != nil {
		t.Fatalf("record written after the torn line was dropped: %v", err)
	}
}

// TestDamagedMiddleLine: damage anywhere but at the end is refused, naming
// the file and the line; nothing is rewritten.
func TestDamagedMiddleLine(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.Create(ctx, fmt.Sprintf("tunnel.t%d", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
	path := filepath.Join(dir, LogFile)
	b, _ := os.ReadFile(path)
	damaged := strings.Replace(string(b), `"key":"tunnel.t1"`, `"key":tunnel.t1"`, 1)
	if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), path+" line 3") {
		t.Fatalf("open a damaged file: %v, want an error naming %s line 3", err, path)
	}
	if after, _ := os.ReadFile(path); string(after) != damaged {
		t.Fatal("a refused open changed the file")
	}
}

// TestOneProcessPerDir: a second open of a directory in use fails with a
// clear error; it succeeds once the first is closed.
func TestOneProcessPerDir(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
	_ = s.Close()
	open(t, dir)
}

// TestCompaction: the file is rewritten as it grows, holds the live records
// only, and a reopen sees the same state.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	rev, err := s.Create(ctx, "tunnel.x", []byte(`{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * compactSlack {
		if rev, err = s.Update(ctx, "tunnel.x", []byte(fmt.Sprintf(`{"n":%d}`, i+1)), rev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, "tunnel.y", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "tunnel.y"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	if n := strings.Count(string(b), "\n"); n > compactSlack+10 {
		t.Fatalf("file holds %d lines after %d updates of one record: not compacted", n, 3*compactSlack)
	}
	_ = s.Close()
	s = open(t, dir)
	r, err := s.Get(ctx, "tunnel.x")
	if err != nil || string(r.Value) != fmt.Sprintf(`{"n":%d}`, 3*compactSlack) || r.Revision != rev {
		t.Fatalf("after compaction and reopen: %+v %v (want revision %d)", r, err, rev)
	}
	if got := s.Revision(); got != rev+2 {
		t.Fatalf("store revision after reopen %d, want %d (the delete's)", got, rev+2)
	}
}

// TestPermissions: the directory and the file are private to the owner.
func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir)
	if _, err := s.Create(context.Background(), "tunnel.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, LogFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

// TestRefusesNonJSON: values are JSON documents (the file stays readable).
func TestRefusesNonJSON(t *testing.T) {
	s := open(t, t.TempDir())
	if _, err := s.Create(context.Background(), "tunnel.a", []byte("not json")); err == nil {
		t.Fatal("a non-JSON value was stored")
	}
	if _, err := s.Get(context.Background(), "tunnel.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused record is visible: %v", err)
	}
}
