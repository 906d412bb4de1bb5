package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sluicemcp/sluice/sdk/internal/abi"
)

// ABIVersion is the native ABI version this package implements.
const ABIVersion = 1

// EnvelopeVersion is the envelope version this package reads and writes.
const EnvelopeVersion = 1

// Envelope flag bits (ABI.md).
const (
	flagNotification = 1 << 0
	flagRelaySide    = 1 << 1
)

var errShortEnvelope = errors.New("sdk: envelope truncated")

// DecodeEnvelope decodes a host-written envelope into m without copying: m's
// strings, Headers and Body point into b, so b must not change while m is in
// use. m.Headers' backing array is reused. It never panics on malformed input.
func DecodeEnvelope(b []byte, m *Message) error {
	if len(b) < 12 {
		return errShortEnvelope
	}
	if v := binary.LittleEndian.Uint32(b); v != EnvelopeVersion {
		return fmt.Errorf("sdk: envelope version %d not supported", v)
	}
	m.Hook = Hook(b[4])
	if m.Hook < HookRequest || m.Hook > HookHTTPResponse {
		return fmt.Errorf("sdk: envelope hook %d unknown", b[4])
	}
	flags := b[5]
	m.Notification = flags&flagNotification != 0
	m.Side = SideAgent
	if flags&flagRelaySide != 0 {
		m.Side = SideRelay
	}
	m.Status = int(binary.LittleEndian.Uint32(b[8:]))
	r := abi.Reader{B: b, Off: 12}
	m.Tunnel = r.Str()
	m.Channel = r.Str()
	m.SessionID = r.Str()
	m.RequestID = r.Str()
	m.Method = r.Str()
	m.Tool = r.Str()
	m.Caller = r.Str()
	n := r.U32()
	if r.Err {
		return errShortEnvelope
	}
	// Each header needs at least 8 bytes: bound n before growing anything.
	if uint64(n)*8 > uint64(len(b)-r.Off) {
		return errShortEnvelope
	}
	m.Headers = m.Headers[:0]
	for range n {
		name := r.Str()
		value := r.Str()
		if r.Err {
			return errShortEnvelope
		}
		m.Headers = append(m.Headers, Header{Name: name, Value: value})
	}
	m.Body = r.Bytes()
	if r.Err {
		return errShortEnvelope
	}
	if r.Off != len(b) {
		return fmt.Errorf("sdk: envelope has %d trailing bytes", len(b)-r.Off)
	}
	return nil
}

// AppendEnvelope appends m encoded as a host→guest envelope to dst. Hosts and
// tests use it; a plugin never needs it.
func AppendEnvelope(dst []byte, m *Message) []byte {
	var flags byte
	if m.Notification {
		flags |= flagNotification
	}
	if m.Side == SideRelay {
		flags |= flagRelaySide
	}
	dst = binary.LittleEndian.AppendUint32(dst, EnvelopeVersion)
	dst = append(dst, byte(m.Hook), flags, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(m.Status))
	for _, s := range [...]string{m.Tunnel, m.Channel, m.SessionID, m.RequestID, m.Method, m.Tool, m.Caller} {
		dst = abi.AppendString(dst, s)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Headers)))
	for _, h := range m.Headers {
		dst = abi.AppendString(dst, h.Name)
		dst = abi.AppendString(dst, h.Value)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Body)))
	return append(dst, m.Body...)
}
