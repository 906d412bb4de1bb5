package logs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// DefaultFileBuffer is how many records may wait for the disk (FileOptions).
const DefaultFileBuffer = 4096

// Errors of File.Write and File.Reopen.
var (
	// ErrBufferFull: the record was dropped because Buffer records were
	// already waiting for the disk.
	ErrBufferFull = errors.New("audit file buffer full: record dropped")
	// ErrClosed: the File was closed.
	ErrClosed = errors.New("audit file closed")
)

// FileOptions configure a File. The zero value is the defaults.
type FileOptions struct {
	// Buffer is how many records may wait for the disk; zero or less means
	// DefaultFileBuffer.
	Buffer int
	// Logger receives write and reopen failures and dropped records (give it
	// a Throttle, since these repeat); nil discards them.
	Logger *slog.Logger
}

// FileStats count what became of a File's records.
type FileStats struct {
	// Written records reached the file (the operating system has them).
	Written uint64
	// Dropped records did not fit in the buffer.
	Dropped uint64
	// Failed records were lost to a write error (a full disk).
	Failed uint64
}

// File is an append-only file of records, one per Write: the audit trail's
// sink (a slog.JSONHandler writes each record with one Write). Write never
// blocks on the disk: it queues a copy of the record for the File's writer
// goroutine and returns; when Buffer records are already queued it drops the
// record, counts it and returns ErrBufferFull. The writer batches what is
// queued and flushes whenever the queue is empty, so records reach the file
// at once when calls are few and in large writes when they are many.
//
// The file is opened with O_APPEND|O_CREATE and mode 0600 (an existing file
// keeps its mode). Reopen opens the path again, for log rotation. Close
// writes what is queued and closes the file.
type File struct {
	path string
	log  *slog.Logger

	mu     sync.RWMutex // guards closed against Close closing queue
	closed bool
	queue  chan *[]byte
	reopen chan chan error
	done   chan struct{}

	written, dropped, failed atomic.Uint64
}

// Interface guards
var _ io.WriteCloser = (*File)(nil)

// OpenFile opens path for appending (creating it with mode 0600) and starts
// the File's writer. The error names the path.
func OpenFile(path string, o FileOptions) (*File, error) {
	fh, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultFileBuffer
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &File{path: path, log: log, queue: make(chan *[]byte, o.Buffer),
		reopen: make(chan chan error), done: make(chan struct{})}
	go f.run(fh)
	return f, nil
}

func openAppend(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return fh, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// recordPool recycles record copies.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooled is the largest record copy kept for reuse.
const maxPooled = 64 << 10

func putRecord(b *[]byte) {
	if cap(*b) <= maxPooled {
		recordPool.Put(b)
	}
}

// Write queues a copy of p, one record, and returns at once: len(p) when it
// was queued, 0 and ErrBufferFull when the buffer was full (the record is
// dropped and counted), 0 and ErrClosed after Close.
func (f *File) Write(p []byte) (int, error) {
	b := recordPool.Get().(*[]byte)
	*b = append((*b)[:0], p...)
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		putRecord(b)
		return 0, ErrClosed
	}
	select {
	case f.queue <- b:
		return len(p), nil
	default:
	}
	putRecord(b)
	f.dropped.Add(1)
	f.log.Warn("audit file buffer full: record dropped (the disk is slower than the calls)", "path", f.path)
	return 0, ErrBufferFull
}

// Reopen opens the path again and writes the following records there, after
// writing what is queued to the old file. Rotation renames the file and
// then asks for a reopen (logrotate's postrotate, or SIGHUP); no record is
// lost in between. When the path cannot be opened, records keep going to the
// old file and the error names the path.
func (f *File) Reopen() error {
	reply := make(chan error, 1)
	select {
	case f.reopen <- reply:
	case <-f.done:
		return ErrClosed
	}
	return <-reply
}

// Stats returns what became of the records so far.
func (f *File) Stats() FileStats {
	return FileStats{Written: f.written.Load(), Dropped: f.dropped.Load(), Failed: f.failed.Load()}
}

// Close writes the queued records, closes the file and stops the writer. It
// is safe to call more than once.
func (f *File) Close() error {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.queue)
	}
	f.mu.Unlock()
	<-f.done
	return nil
}

// fileWriteBuffer is the writer's buffer: records are batched up to it.
const fileWriteBuffer = 64 << 10

// run is the writer goroutine.
func (f *File) run(fh *os.File) {
	defer close(f.done)
	w := bufio.NewWriterSize(fh, fileWriteBuffer)
	pending := 0 // records in w
	flush := func() {
		if pending == 0 {
			return
		}
		if err := w.Flush(); err != nil {
			f.failed.Add(uint64(pending))
			f.log.Error("audit file write failed: records lost", "path", f.path, "records", pending, "err", err)
			w.Reset(fh) // drop what failed; the next records try again
		} else {
			f.written.Add(uint64(pending))
		}
		pending = 0
	}
	for {
		select {
		case b, ok := <-f.queue:
			if !ok {
				flush()
				if err := fh.Close(); err != nil {
					f.log.Error("audit file close failed", "path", f.path, "err", err)
				}
				return
			}
			if len(*b) > w.Available() {
				flush() // whole records per write(2): appenders sharing the file never split one
			}
			_, _ = w.Write(*b) // an error sticks to w: flush reports it
			pending++
			putRecord(b)
			if len(f.queue) == 0 {
				flush()
			}
		case reply := <-f.reopen:
			flush()
			nf, err := openAppend(f.path)
			if err == nil {
				if cerr := fh.Close(); cerr != nil {
					f.log.Warn("audit file: closing the old file failed", "path", f.path, "err", cerr)
				}
				fh = nf
				w.Reset(fh)
			}
			reply <- err
		}
	}
}
