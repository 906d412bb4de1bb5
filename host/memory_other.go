//go:build !linux

package host

// mapMemory is not used here: linear memory lives on the Go heap, and the
// memory of a closed instance waits for the garbage collector.
func mapMemory(uint64) ([]byte, error) { return nil, nil }

func unmapMemory([]byte) {}
