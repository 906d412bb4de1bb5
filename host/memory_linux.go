package host

import "syscall"

// mapMemory reserves n bytes of zeroed memory outside the Go heap: private
// anonymous pages, backed by RAM only once written (MAP_NORESERVE: the
// reservation is address space, not committed memory).
func mapMemory(n uint64) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	return syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
}

// unmapMemory returns b, from mapMemory, to the operating system at once.
func unmapMemory(b []byte) {
	if len(b) > 0 {
		_ = syscall.Munmap(b)
	}
}
