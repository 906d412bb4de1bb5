package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// roleEnv makes the test binary serve as one of the suite's own processes
// (the counting MCP server) instead of running tests.
const roleEnv = "SLUICE_FAULTS_ROLE"

// sluiceBin is the sluice binary built once for the whole run.
var sluiceBin string

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "countserver":
		if err := faultkit.ServeCountServer(context.Background(), os.Getenv("ADDR"), os.Getenv("COUNT_LOG")); err != nil {
			fmt.Fprintln(os.Stderr, "count server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "slowbodies":
		if err := runSlowBodies(); err != nil {
			fmt.Fprintln(os.Stderr, "slow bodies:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("SLUICE_FAULTS") != "1" {
		fmt.Println("engine/faults: the fault suite runs with `make faults` (SLUICE_FAULTS=1); skipped")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "sluice-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", sluiceBin, "github.com/sluicemcp/sluice/cmd/sluice")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "engine/faults: build sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
