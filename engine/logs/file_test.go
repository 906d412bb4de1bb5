package logs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// auditLogger is how cmd/sluice writes the audit trail to a File.
func auditLogger(f *File) *slog.Logger { return slog.New(slog.NewJSONHandler(f, nil)) }

func record(l *slog.Logger, id string) {
	l.Info("tool call", "request_id", id, "tool", "echo", "outcome", "ok", "status", 200)
}

// readIDs returns the request ids of the JSON lines of path, failing on any
// line that is not a whole JSON object.
func readIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: not a JSON line: %q", path, line)
		}
		ids = append(ids, m.RequestID)
	}
	return ids
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// TestFileRecords: records become JSON lines appended after what the file
// held, in order; a new file is created with mode 0600; Close writes
// everything queued.
func TestFileRecords(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := auditLogger(f)
	for _, id := range ids("a", 1000) {
		record(l, id)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// Appending: a second File adds to the first one's records.
	f, err = OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	record(auditLogger(f), "b-0")
	_ = f.Close()
	got := readIDs(t, path)
	if want := append(ids("a", 1000), "b-0"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("file holds %d records, want %d in order", len(got), len(want))
	}
	if s := f.Stats(); s.Written != 1 || s.Dropped != 0 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
	if _, err := f.Write([]byte("{}\n")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := f.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestFileReopenAfterRename is logrotate's create mode: the file is renamed
// while records keep coming, then the sink is told to reopen. Every record
// is in the old file or the new one, each a whole line, none twice.
func TestFileReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := auditLogger(f)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			record(l, fmt.Sprintf("r-%d", n))
			n++
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // records still go to the renamed file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	n := <-done
	_ = f.Close()
	old, cur := readIDs(t, path+".1"), readIDs(t, path)
	if len(old) == 0 || len(cur) == 0 {
		t.Fatalf("old file %d records, new file %d: the rotation did not happen mid-stream", len(old), len(cur))
	}
	st := f.Stats()
	if got := uint64(len(old) + len(cur)); got+st.Dropped != uint64(n) || got != st.Written {
		t.Fatalf("%d records logged; %d in the files, %d dropped, stats %+v", n, got, st.Dropped, st)
	}
	seen := map[string]bool{}
	for _, id := range append(old, cur...) {
		if seen[id] {
			t.Fatalf("record %s written twice", id)
		}
		seen[id] = true
	}
	t.Logf("%d records: %d before the reopen, %d after, %d dropped", n, len(old), len(cur), st.Dropped)
}

// TestFileReopenFails: when the path cannot be opened again, Reopen says so
// naming the path, and records keep going to the file already open.
func TestFileReopenFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	f, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	held, err := os.Open(path) // the file as the sink holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err = f.Reopen()
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reopen = %v, want an error naming %s", err, path)
	}
	record(auditLogger(f), "after")
	_ = f.Close()
	b, _ := io.ReadAll(held)
	if !strings.Contains(string(b), `"request_id":"after"`) {
		t.Fatalf("the record after a failed reopen is lost: %q", b)
	}
}

// TestFileNeverBlocks: with the disk stuck (a FIFO nobody reads, so the
// writer blocks), Write still returns at once: records beyond the buffer
// are dropped and counted, and a throttled warning says so. Once the disk
// moves again, every queued record arrives.
func TestFileNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader that does not read yet, so the writer can open the FIFO and
	// then blocks once the pipe is full.
	rd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var warnings sink
	wlog := slog.New(NewThrottle(slog.NewJSONHandler(&warnings, nil), ThrottleOptions{}))
	f, err := OpenFile(path, FileOptions{Buffer: 64, Logger: wlog})
	if err != nil {
		t.Fatal(err)
	}
	l := auditLogger(f)
	const total = 5000 // ~100 bytes each: more than the pipe (64 KiB) and the buffer hold
	finished := make(chan struct{})
	go func() {
		for _, id := range ids("r", total) {
			record(l, id)
		}
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked behind a stuck disk")
	}
	st := f.Stats()
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped with the disk stuck: %+v", st)
	}
	if lines := warnings.records(t); len(lines) != 1 || !strings.Contains(lines[0]["msg"].(string), "buffer full") {
		t.Fatalf("want one throttled warning about dropped records, got %v", lines)
	}
	// The disk moves again: read everything; Close then finishes.
	if err := syscall.SetNonblock(int(rd.Fd()), false); err != nil {
		t.Fatal(err)
	}
	got := make(chan []string)
	go func() {
		var out []string
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			var m struct {
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				out = append(out, m.RequestID)
			}
		}
		got <- out
	}()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	arrived := <-got
	st = f.Stats()
	if uint64(len(arrived)) != st.Written || st.Written+st.Dropped != total || st.Failed != 0 {
		t.Fatalf("%d records arrived; stats %+v; %d logged", len(arrived), st, total)
	}
	t.Logf("disk stuck: %d of %d records dropped, %d written", st.Dropped, total, st.Written)
}

// TestFileWriteErrors: a write error (a full disk: /dev/full) loses the
// records of that write, counts them as failed and logs an error; the sink
// keeps going and the call never sees it.
func TestFileWriteErrors(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full: %v (Linux provides it)", err)
	}
	var errs sink
	f, err := OpenFile("/dev/full", FileOptions{Logger: slog.New(slog.NewJSONHandler(&errs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l := auditLogger(f)
	for _, id := range ids("r", 10) {
		record(l, id)
	}
	_ = f.Close()
	st := f.Stats()
	if st.Failed != 10 || st.Written != 0 {
		t.Fatalf("stats %+v, want 10 failed", st)
	}
	lines := errs.records(t)
	if len(lines) == 0 || lines[0]["level"] != "ERROR" || !strings.Contains(fmt.Sprint(lines[0]["err"]), "no space") {
		t.Fatalf("write errors were not logged: %v", lines)
	}
}

// TestOpenFileErrors: an unusable path is an error naming it.
func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing", "audit.jsonl"), dir} {
		_, err := OpenFile(p, FileOptions{})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("OpenFile(%s) = %v, want an error naming the path", p, err)
		}
	}
}
