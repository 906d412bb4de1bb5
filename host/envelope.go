package host

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sluicemcp/sluice/engine"
)

// envelopeSlack is what the envelope may add to max-message-size (context
// strings and headers).
const envelopeSlack = 256 << 10

var le = binary.LittleEndian

// envelopeSize returns the exact size of m's native envelope.
func envelopeSize(m *engine.Message) uint64 {
	n := uint64(envOffStrings + 4*envStrings + 4 + 4)
	n += uint64(len(m.Tunnel) + len(m.Channel) + len(m.SessionID) + len(m.RequestID) +
		len(m.Method) + len(m.Tool) + len(m.Caller))
	for k, vs := range m.Header {
		for _, v := range vs {
			n += 8 + uint64(len(k)+len(v))
		}
	}
	return n + uint64(len(m.Body))
}

// encodeEnvelope writes m's envelope into b, which is exactly
// envelopeSize(m) bytes (guest memory).
func encodeEnvelope(b []byte, m *engine.Message) {
	le.PutUint32(b[envOffVersion:], EnvelopeVersion)
	b[envOffHook] = byte(m.Hook)
	var fl byte
	if m.Notification {
		fl |= envFlagNotification
	}
	if m.Side == engine.SideRelay {
		fl |= envFlagRelay
	}
	b[envOffFlags] = fl
	b[6], b[7] = 0, 0
	le.PutUint32(b[envOffStatus:], uint32(m.Status))
	o := envOffStrings
	o = putString(b, o, m.Tunnel)
	o = putString(b, o, m.Channel)
	o = putString(b, o, m.SessionID)
	o = putString(b, o, m.RequestID)
	o = putString(b, o, m.Method)
	o = putString(b, o, m.Tool)
	o = putString(b, o, m.Caller)
	cnt := o
	o += 4
	var nh uint32
	for k, vs := range m.Header {
		for _, v := range vs {
			o = putString(b, o, k)
			o = putString(b, o, v)
			nh++
		}
	}
	le.PutUint32(b[cnt:], nh)
	le.PutUint32(b[o:], uint32(len(m.Body)))
	copy(b[o+4:], m.Body)
}

func putString(b []byte, o int, s string) int {
	le.PutUint32(b[o:], uint32(len(s)))
	return o + 4 + copy(b[o+4:], s)
}

// answerReader reads an answer with bounds checks; the first error sticks.
type answerReader struct {
	b   []byte
	o   int
	err error
}

func (r *answerReader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.o < 4 {
		r.err = fmt.Errorf("answer truncated at offset %d", r.o)
		return 0
	}
	v := le.Uint32(r.b[r.o:])
	r.o += 4
	return v
}

func (r *answerReader) bytes() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)-r.o) < uint64(n) {
		r.err = fmt.Errorf("answer string of %d bytes at offset %d overruns the answer", n, r.o)
		return nil
	}
	s := r.b[r.o : r.o+int(n)]
	r.o += int(n)
	return s
}

// decodeAnswer parses a native answer (guest memory, read-only) for m. It
// copies what it keeps.
func decodeAnswer(b []byte, m *engine.Message) (engine.Result, error) {
	if len(b) < ansMinLen {
		return engine.Result{}, fmt.Errorf("answer of %d bytes is shorter than %d", len(b), ansMinLen)
	}
	a := engine.Action(b[ansOffAction])
	if a == engine.Continue {
		return engine.Result{}, nil
	}
	if a > engine.Drop {
		return engine.Result{}, fmt.Errorf("unknown action %d", a)
	}
	if a == engine.Drop {
		if !m.Notification {
			return engine.Result{}, errors.New("drop answered for a message that is not a notification")
		}
		return engine.Result{Action: engine.Drop}, nil
	}
	flags := b[ansOffFlags]
	st := le.Uint32(b[ansOffStatus:])
	if st != 0 && (st < 100 || st > 599) {
		return engine.Result{}, fmt.Errorf("answer status %d is not an HTTP status", st)
	}
	r := engine.Result{Action: a, Status: int(st)}
	rd := answerReader{b: b, o: ansOffHeaders}
	n := rd.u32()
	if uint64(n)*9 > uint64(len(b)) {
		return engine.Result{}, fmt.Errorf("answer header-edit count %d overruns the answer", n)
	}
	if n > 0 {
		h := m.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		for j := uint32(0); j < n && rd.err == nil; j++ {
			if rd.o >= len(b) {
				rd.err = errors.New("answer truncated in header edits")
				break
			}
			op := b[rd.o]
			rd.o++
			name, val := rd.bytes(), rd.bytes()
			if rd.err != nil {
				break
			}
			if len(name) == 0 {
				return engine.Result{}, errors.New("header edit with an empty name")
			}
			k := http.CanonicalHeaderKey(string(name))
			switch op {
			case headerOpSet:
				h[k] = []string{string(val)}
			case headerOpAdd:
				h[k] = append(h[k], string(val))
			case headerOpDelete:
				delete(h, k)
			default:
				return engine.Result{}, fmt.Errorf("unknown header op %d", op)
			}
		}
		r.Header = h
	}
	body := rd.bytes()
	if rd.err != nil {
		return engine.Result{}, rd.err
	}
	switch a {
	case engine.Replace, engine.Respond:
		if flags&ansFlagBody != 0 {
			if m.Hook == engine.HookHTTPResponse && a == engine.Replace {
				r.Body = bytes.Clone(body) // a raw HTTP body, any bytes
			} else {
				if !isJSONObject(body) {
					return engine.Result{}, fmt.Errorf("%s body is not a single JSON object", a)
				}
				r.Body = bytes.Clone(body)
			}
		} else if a == engine.Respond {
			return engine.Result{}, errors.New("respond without a body")
		}
	case engine.Reject:
		if len(body) > 0 {
			e, err := parseRPCError(body)
			if err != nil {
				return engine.Result{}, err
			}
			r.Error = e
		}
	}
	return r, nil
}

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool { return engine.ValidObject(b) }

func parseRPCError(b []byte) (*engine.RPCError, error) {
	if !isJSONObject(b) {
		return nil, errors.New("reject body is not a JSON-RPC error object")
	}
	var e struct {
		Code    *int            `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("reject body: %w", err)
	}
	if e.Code == nil {
		return nil, errors.New("reject body has no error code")
	}
	return &engine.RPCError{Code: *e.Code, Message: e.Message, Data: e.Data}, nil
}

func canonicalKey(s string) string { return http.CanonicalHeaderKey(s) }
