package host

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero/experimental"
)

// memAllocator backs the linear memory of one stage's instances. Each memory
// is reserved at its maximum size up front (address space, outside the Go
// heap where the platform allows it: see mapMemory), grows in place, and is
// released the moment its instance closes, so a guest that is discarded
// after a trap gives its memory back to the operating system at once instead
// of leaving it to the garbage collector (RATIONALE.md, "Memory of discarded
// instances").
type memAllocator struct {
	used prometheus.Gauge // the stage's linear memory in use, in bytes
}

// allocatorFor returns ctx carrying a wazero memory allocator that records
// the memory it creates in *lm (nil until the module defines a memory).
func (a *memAllocator) allocatorFor(ctx context.Context, lm **linearMemory) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(_, maxBytes uint64) experimental.LinearMemory {
		m := &linearMemory{a: a, max: maxBytes}
		*lm = m
		return m
	}))
}

// linearMemory is one instance's linear memory. wazero calls Reallocate on
// the guest's goroutine (instantiation, memory.grow) and Free when the
// module closes, which may happen on another goroutine while a guest call is
// still running (a stage closed after its drain timeout): Free then only
// marks the memory, and the holder releases it when the call returns
// (leave), since unmapping memory a guest still runs on would crash the
// process.
type linearMemory struct {
	a   *memAllocator
	max uint64

	mu     sync.Mutex
	buf    []byte // the reservation (max bytes when mapped), nil until the first Reallocate
	mapped bool   // buf is from mapMemory (else from the Go heap)
	size   uint64 // bytes handed to wazero
	busy   bool   // a guest call (or the host, for it) is using the memory
	freed  bool   // Free was called
	gone   bool   // the reservation is released
}

// Interface guard.
var _ experimental.LinearMemory = (*linearMemory)(nil)

// Reallocate implements experimental.LinearMemory: it returns the memory
// grown to size bytes, in place. nil fails the grow (the guest sees -1).
func (m *linearMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone || size > m.max {
		return nil
	}
	if m.buf == nil {
		if b, err := mapMemory(m.max); err == nil && b != nil {
			m.buf, m.mapped = b, true
		}
	}
	if uint64(cap(m.buf)) < size {
		// Not mapped (a platform without mmap, or mmap refused): grow on the
		// Go heap by copying, as wazero itself does. The first call must not
		// fail: wazero cannot handle that at instantiation.
		nb := make([]byte, size)
		copy(nb, m.buf[:m.size])
		m.buf = nb
	}
	if size > m.size {
		m.a.used.Add(float64(size - m.size))
		m.size = size
	}
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.freed = true
	if !m.busy {
		m.release()
	}
}

// enter marks the memory in use by a call; leave ends that and releases the
// memory if Free came meanwhile.
func (m *linearMemory) enter() {
	m.mu.Lock()
	m.busy = true
	m.mu.Unlock()
}

func (m *linearMemory) leave() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy = false
	if m.freed {
		m.release()
	}
}

// release gives the reservation back; m.mu is held.
func (m *linearMemory) release() {
	if m.gone {
		return
	}
	m.gone = true
	if m.mapped {
		unmapMemory(m.buf)
	}
	m.buf = nil
	m.a.used.Sub(float64(m.size))
}
