package main

import (
	"errors"

	"github.com/sluicemcp/sluice/host"
)

// Bounds of the files a configuration names. Each is read whole into
// memory: a path such as /dev/zero must be an error, not an endless read.
const (
	maxConfigFileBytes = 16 << 20 // the YAML config file
	maxSecretFileBytes = 64 << 10 // a file: secret reference
	maxPEMFileBytes    = 16 << 20 // ca-bundle, relay.tls-cert, relay.tls-key
)

// readFileLimited reads the regular file at path, at most limit bytes
// (host.ReadFileLimited: a device, a FIFO or a larger file is an error).
func readFileLimited(path string, limit int64) ([]byte, error) {
	return host.ReadFileLimited(path, limit)
}

// fileBytes is a koanf provider of a file's bytes, read by readFileLimited.
type fileBytes struct {
	path  string
	limit int64
}

// ReadBytes reads the file.
func (f fileBytes) ReadBytes() ([]byte, error) { return readFileLimited(f.path, f.limit) }

// Read is not supported: the file needs a parser.
func (fileBytes) Read() (map[string]any, error) {
	return nil, errors.New("fileBytes provider does not support Read()")
}

// configFile is the koanf provider of the config file at path.
func configFile(path string) fileBytes { return fileBytes{path: path, limit: maxConfigFileBytes} }
