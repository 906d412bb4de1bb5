//go:build linux || darwin || freebsd || netbsd || openbsd

package httpx

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerOpen reports whether an idle connection is still usable: no EOF from
// the peer and no unread bytes (one non-blocking peek, no data consumed).
func peerOpen(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	if errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) {
		return true // nothing to read: open and idle
	}
	return false // EOF (n == 0), stray bytes (n > 0) or an error
}
