package httpbinding

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// chunkReader returns its input in small chunks of pseudo-random size.
type chunkReader struct {
	b   []byte
	rng *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.IntN(7)
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func readAll(t testing.TB, r io.Reader, max int) ([]event, error) {
	t.Helper()
	sr := newSSEReader(r, max)
	var out []event
	for range 100000 {
		ev, err := sr.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, event{Type: ev.Type, ID: ev.ID, Data: bytes.Clone(ev.Data)})
	}
	t.Fatal("sse reader did not terminate")
	return nil, nil
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []event
	}{
		{"lf", "data: a\n\ndata: b\n\n", []event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"cr", "data: a\r\rdata: b\r\r", []event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"multiline", "data: {\"a\":\ndata: 1}\n\n", []event{{Data: []byte("{\"a\":\n1}")}}},
		{"no space", "data:x\n\n", []event{{Data: []byte("x")}}},
		{"two spaces keep one", "data:  x\n\n", []event{{Data: []byte(" x")}}},
		{"event and id", "event: message\nid: 7\ndata: x\n\n", []event{{Type: "message", ID: "7", Data: []byte("x")}}},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", []event{{ID: "1", Data: []byte("a")}, {ID: "1", Data: []byte("b")}}},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []event{{ID: "1", Data: []byte("a")}, {ID: "1", Data: []byte("b")}}},
		{"comments", ": keep-alive\n\n: ping\ndata: x\n\n", []event{{Data: []byte("x")}}},
		{"bom", "\xef\xbb\xbfdata: x\n\n", []event{{Data: []byte("x")}}},
		{"no trailing blank line", "data: a\n\ndata: b", []event{{Data: []byte("a")}, {Data: []byte("b")}}},
		{"no trailing blank line after lf", "data: b\n", []event{{Data: []byte("b")}}},
		{"event without data not dispatched", "event: foo\n\ndata: x\n\n", []event{{Data: []byte("x")}}},
		{"empty data dispatched", "id: p\ndata:\n\n", []event{{ID: "p", Data: []byte("")}}},
		{"unknown field", "retry: 10\nfoo: bar\ndata: x\n\n", []event{{Data: []byte("x")}}},
		{"field without colon", "data\n\n", []event{{Data: []byte("")}}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(8) {
				var r io.Reader = strings.NewReader(tt.in)
				if seed > 0 {
					r = &chunkReader{b: []byte(tt.in), rng: rand.New(rand.NewPCG(seed, 1))}
				}
				got, err := readAll(t, r, 1<<20)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if !eventsEqual(got, tt.want) {
					t.Fatalf("seed %d: got %q, want %q", seed, got, tt.want)
				}
			}
		})
	}
}

func TestSSEReaderTooLarge(t *testing.T) {
	tests := []struct{ name, in string }{
		{"long line", "data: " + strings.Repeat("x", 100) + "\n\n"},
		{"many lines", strings.Repeat("data: xxxxxxxxxx\n", 20) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, strings.NewReader(tt.in), 64)
			if !errors.Is(err, errTooLarge) {
				t.Fatalf("err = %v, want errTooLarge", err)
			}
		})
	}
}

func eventsEqual(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].ID != b[i].ID || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// encodeEvents writes events in SSE form with the given line ending.
func encodeEvents(evs []event, eol string) []byte {
	var b bytes.Buffer
	for _, ev := range evs {
		if ev.Type != "" {
			b.WriteString("event: " + ev.Type + eol)
		}
		b.WriteString("id: " + ev.ID + eol)
		for line := range strings.SplitSeq(string(ev.Data), "\n") {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	return b.Bytes()
}

// sanitize removes what a field value cannot carry.
func sanitize(s string, allowLF bool) string {
	s = strings.NewReplacer("\r", "", "\x00", "").Replace(s)
	if !allowLF {
		s = strings.ReplaceAll(s, "\n", "")
	}
	return s
}

func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\"}\n\n"), "message", "1", "{\"a\":\n1}", uint64(1))
	f.Add([]byte("\xef\xbb\xbf: c\r\ndata:x\r\rdata"), "", "", "", uint64(2))
	f.Add([]byte("event: x\nid: \x00\ndata: \n"), "ping", "abc", "line1\nline2\n", uint64(3))
	f.Fuzz(func(t *testing.T, raw []byte, typ, id, data string, seed uint64) {
		// Arbitrary input never panics and terminates.
		_, _ = readAll(t, &chunkReader{b: raw, rng: rand.New(rand.NewPCG(seed, 2))}, 1<<16)

		// Round trip: encoded events decode identically however they are chunked.
		ev := event{Type: sanitize(typ, false), ID: sanitize(id, false), Data: []byte(sanitize(data, true))}
		if ev.Type == "" {
			ev.Type = "message"
		}
		want := []event{ev, {Type: "", ID: ev.ID + "2", Data: []byte("tail")}}
		for i, eol := range []string{"\n", "\r\n", "\r"} {
			in := encodeEvents(want, eol)
			got, err := readAll(t, &chunkReader{b: in, rng: rand.New(rand.NewPCG(seed, uint64(i)))}, 1<<20)
			if err != nil {
				t.Fatalf("eol %q: %v", eol, err)
			}
			if !eventsEqual(got, want) {
				t.Fatalf("eol %q: got %q, want %q", eol, got, want)
			}
		}
	})
}
