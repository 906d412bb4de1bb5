package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Bounds of the files a configuration names. Each is read whole into
// memory: a path such as /dev/zero must be an error, not an endless read.
const (
	maxConfigFileBytes = 16 << 20 // the YAML config file
	maxSecretFileBytes = 64 << 10 // a file: secret reference
	maxPEMFileBytes    = 16 << 20 // ca-bundle, relay.tls-cert, relay.tls-key
)

// readFileLimited reads the regular file at path, at most limit bytes. A
// device, a FIFO (whose open would block) or a directory is refused
// unread, and so is a larger file. Errors name the path, never the content.
func readFileLimited(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
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
