package httpbinding

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// errTooLarge is returned when one line or one event exceeds the size limit.
var errTooLarge = errors.New("sse: event exceeds size limit")

// event is one dispatched server-sent event.
type event struct {
	Type string // the "event:" field; "" means "message"
	ID   string // the last event id seen on the stream
	Data []byte // the joined "data:" lines, without the final line feed
}

// sseReader splits a text/event-stream into events as bytes arrive, following
// the WHATWG event-stream interpretation rules: LF, CR and CRLF line endings,
// a leading UTF-8 BOM, comments, multi-line data. Unlike the standard, an event
// cut off by the end of the stream (no blank line after it) is still dispatched.
type sseReader struct {
	r     io.Reader
	buf   []byte
	start int
	end   int
	err   error // sticky error from r
	max   int   // maximum size of one line and of one event's data

	bomChecked bool
	pendingCR  bool // the previous line ended with CR: skip one LF
	eof        bool // all lines consumed

	typ    string
	lastID string
	retry  time.Duration // the last "retry:" field, 0 when none
	data   []byte
	hasAny bool // a field was seen since the last dispatch
}

func newSSEReader(r io.Reader, max int) *sseReader {
	size := 4096
	if max > 0 && max < size {
		size = max + 1
	}
	return &sseReader{r: r, buf: make([]byte, size), max: max}
}

// fill reads more bytes into buf, compacting or growing it as needed.
func (s *sseReader) fill() {
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		s.start, s.end = 0, n
	}
	if s.end == len(s.buf) {
		if s.max > 0 && len(s.buf) > s.max {
			s.err = errTooLarge
			return
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	if err != nil {
		s.err = err
	}
}

// readLine returns the next line without its terminator. The slice is valid
// until the next call. At the end of input it returns the final unterminated
// line (if any) and then the reader's error (io.EOF for a clean end).
func (s *sseReader) readLine() ([]byte, error) {
	for {
		if s.pendingCR {
			if s.start < s.end {
				if s.buf[s.start] == '\n' {
					s.start++
				}
				s.pendingCR = false
			} else if s.err == nil {
				s.fill()
				continue
			} else {
				s.pendingCR = false
			}
		}
		if !s.bomChecked {
			if s.end-s.start < 3 && s.err == nil {
				s.fill()
				continue
			}
			if bytes.HasPrefix(s.buf[s.start:s.end], []byte("\xef\xbb\xbf")) {
				s.start += 3
			}
			s.bomChecked = true
		}
		if i := bytes.IndexAny(s.buf[s.start:s.end], "\r\n"); i >= 0 {
			line := s.buf[s.start : s.start+i]
			if s.buf[s.start+i] == '\r' {
				s.pendingCR = true
			}
			s.start += i + 1
			return line, nil
		}
		if s.err != nil {
			if s.start < s.end {
				line := s.buf[s.start:s.end]
				s.start = s.end
				return line, nil
			}
			return nil, s.err
		}
		s.fill()
	}
}

// next returns the next event. At a clean end of the stream it returns io.EOF
// (after dispatching an unterminated final event); other read errors are
// returned as they are.
func (s *sseReader) next() (event, error) {
	for {
		if s.eof {
			return event{}, io.EOF
		}
		line, err := s.readLine()
		if err != nil {
			s.eof = err == io.EOF
			if err == io.EOF && s.hasAny && s.data != nil {
				return s.dispatch(), nil
			}
			if err == io.EOF {
				return event{}, io.EOF
			}
			return event{}, err
		}
		if len(line) == 0 {
			if s.data == nil {
				s.typ, s.hasAny = "", false
				continue
			}
			return s.dispatch(), nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		s.hasAny = true
		switch string(field) {
		case "data":
			if s.max > 0 && len(s.data)+len(value)+1 > s.max {
				return event{}, errTooLarge
			}
			if s.data == nil {
				s.data = make([]byte, 0, len(value)+1)
			}
			s.data = append(s.data, value...)
			s.data = append(s.data, '\n')
		case "event":
			s.typ = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				s.retry = time.Duration(n) * time.Millisecond
			}
		}
	}
}

func (s *sseReader) dispatch() event {
	d := s.data
	if n := len(d); n > 0 && d[n-1] == '\n' {
		d = d[:n-1]
	}
	ev := event{Type: s.typ, ID: s.lastID, Data: d}
	s.data, s.typ, s.hasAny = nil, "", false
	return ev
}
