//go:build !unix

package host

import "os"

// lockFile does nothing where there is no flock: keep one process per
// state directory by hand.
func lockFile(*os.File) error { return nil }
