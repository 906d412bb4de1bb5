package toolguard

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// PinsVersion is the version of the pins document this package reads and
// writes.
const PinsVersion = 1

// PinsFile is the pins document `sluice tools pin` writes and a pin set's
// "from" reads: the pin of every tool a server listed.
type PinsFile struct {
	Version int `json:"version"`
	// Server names the server the pins were taken from (informational).
	Server *ServerInfo `json:"server,omitempty"`
	// Tools maps each tool name to its pin (HashTool).
	Tools map[string]string `json:"tools"`
}

// ServerInfo is the server's name and version from its initialize answer.
type ServerInfo struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// ParsePins decodes and checks a pins document.
func ParsePins(raw []byte) (*PinsFile, error) {
	var p PinsFile
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return nil, fmt.Errorf("pins document: %w", err)
	}
	if p.Version != PinsVersion {
		return nil, fmt.Errorf("pins document: version %d not supported (want %d)", p.Version, PinsVersion)
	}
	for name, h := range p.Tools {
		if err := checkPin(h); err != nil {
			return nil, fmt.Errorf("pins document: tool %q: %w", name, err)
		}
	}
	return &p, nil
}

// MarshalPins renders a pins document: indented, keys sorted, one tool
// per line, so a re-pin is a readable diff.
func MarshalPins(p *PinsFile) ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// checkPin checks the form "sha256:" + 64 lower-case hex digits.
func checkPin(h string) error {
	x, ok := strings.CutPrefix(h, HashPrefix)
	if !ok || len(x) != 64 || strings.ToLower(x) != x {
		return fmt.Errorf("pin %q: want sha256: and 64 lower-case hex digits", h)
	}
	if _, err := hex.DecodeString(x); err != nil {
		return fmt.Errorf("pin %q: want sha256: and 64 lower-case hex digits", h)
	}
	return nil
}

// rawPin decodes a checked pin into its 32 bytes.
func rawPin(h string) (p [32]byte) {
	_, _ = hex.Decode(p[:], []byte(h[len(HashPrefix):]))
	return p
}
