package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// startup measures how long `sluice run` with the given chain takes from
// exec to a ready /readyz (MCP server probed, relay poll accepted): once with
// an empty compilation cache, then twice with the cache the first run filled.
func (b *bench) startup(echoURL, pipeline string) error {
	_, relayCmd, agentCmd, err := b.startTunnel(echoURL, pipeline)
	if err != nil {
		return err
	}
	// startTunnel left an agent running: stop it, keep the relay.
	_ = syscall.Kill(-agentCmd.Process.Pid, syscall.SIGTERM)
	_ = agentCmd.Wait()
	b.procs = b.procs[:len(b.procs)-1]
	defer func() {
		_ = syscall.Kill(-relayCmd.Process.Pid, syscall.SIGTERM)
		_ = relayCmd.Wait()
		b.procs = b.procs[:len(b.procs)-1]
	}()
	cache, err := os.MkdirTemp(b.tmp, "cache-")
	if err != nil {
		return err
	}
	for i, label := range []string{"cold cache", "warm cache", "warm cache"} {
		healthAddr := freeAddr()
		t0 := time.Now()
		cmd, err := b.start(fmt.Sprintf("startup-%d", i), append(b.tunnelEnv, "XDG_CACHE_HOME="+cache),
			append([]string{b.bin, "run"}, append(b.agentArgs(echoURL), "--health.listen-addr", healthAddr)...)...)
		if err != nil {
			return err
		}
		err = waitHTTP("http://"+healthAddr+"/readyz", func(s int) bool { return s == 200 }, 30*time.Second)
		d := time.Since(t0)
		rss := rssKiB(cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		b.procs = b.procs[:len(b.procs)-1]
		if err != nil {
			return fmt.Errorf("startup (%s): %w", label, err)
		}
		fmt.Printf("startup to ready, %s chain, %s: %.0f ms (RSS when ready %.1f MiB)\n", pipeline, label, float64(d.Microseconds())/1000, float64(rss)/1024)
	}
	return nil
}
