//go:build !unix

package host

import (
	"os"
	"os/exec"
)

// ownProcessGroup does nothing where process groups do not exist.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup kills p.
func killProcessGroup(p *os.Process) error { return p.Kill() }
