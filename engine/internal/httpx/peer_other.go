//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package httpx

import "net"

// peerOpen cannot peek on this platform; a dead connection shows up as an
// error on first use instead.
func peerOpen(net.Conn) bool { return true }
