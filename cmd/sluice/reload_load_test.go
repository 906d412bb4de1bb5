package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// TestPipelineReloadUnderLoad swaps the agent's chain back and forth while
// clients call a tool without pause. Each generation is two redact stages
// masking with the generation's own text (one masks emails, the other phone
// numbers), so a response masked by stages of two generations would show both
// texts. No call may fail and none may show a mixed chain; both generations
// must have served calls.
func TestPipelineReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the redact plugin")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "dev.yaml")
	write := func(gen string) {
		var sb strings.Builder
		sb.WriteString("pipeline:\n")
		for _, kind := range []string{"email", "phone"} {
			// A generous call timeout: this test is about reloads, and -race
			// on a busy CI machine can stretch a guest call far past the default.
			fmt.Fprintf(&sb, "  - plugin: redact\n    name: %s-%s\n    config: {only: [%s], mask: fixed, mask_text: %s}\n    limits: {call-timeout: 30s}\n", kind, gen, kind, gen)
		}
		replaceFile(t, cfgPath, sb.String())
	}
	write("GENA")
	info, errb, reload := startDevWithConfig(t, cfgPath)

	const msg = "write to jane.doe@example.com or call +1 415-555-0132"
	var calls, failures atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		c := mcpClient(t, info.MCPURL, info.Key)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := initialize(ctx, c); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := mcp.CallToolRequest{}
				req.Params.Name = "echo"
				req.Params.Arguments = map[string]any{"message": msg}
				// Each call its own bound: eight reloads under -race on a
				// busy machine can take longer than any one call may.
				cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
				r, err := c.CallTool(cctx, req)
				ccancel()
				calls.Add(1)
				text := ""
				if err == nil && !r.IsError && len(r.Content) == 1 {
					if tc, ok := r.Content[0].(mcp.TextContent); ok {
						text = tc.Text
					}
				}
				gen := ""
				switch text {
				case "write to GENA or call GENA":
					gen = "GENA"
				case "write to GENB or call GENB":
					gen = "GENB"
				}
				if gen == "" {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("err=%v text=%q", err, text))
					continue
				}
				mu.Lock()
				seen[gen]++
				mu.Unlock()
			}
		}()
	}
	reloaded := func() int { return strings.Count(errb.String(), "reloaded pipeline") }
	for i := 0; i < 8; i++ {
		time.Sleep(150 * time.Millisecond)
		gen := "GENB"
		if i%2 == 1 {
			gen = "GENA"
		}
		before := reloaded()
		write(gen)
		reload <- struct{}{}
		deadline := time.Now().Add(devStartTimeout) // generous: instances are made anew, under -race on a busy machine
		for reloaded() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d (%s) not applied within %s; stderr:\n%s", i, gen, devStartTimeout, errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d calls across 8 reloads: %v", calls.Load(), seen)
	if f := failures.Load(); f > 0 {
		var why []string
		for _, line := range strings.Split(errb.String(), "\n") {
			if strings.Contains(line, "plugin failed") || strings.Contains(line, "reload") {
				why = append(why, line)
			}
		}
		t.Fatalf("%d of %d calls failed or saw a mixed chain; first: %v\n%s", f, calls.Load(), firstFailure.Load(), strings.Join(why, "\n"))
	}
	if seen["GENA"] == 0 || seen["GENB"] == 0 {
		t.Fatalf("both generations should have served calls: %v", seen)
	}
}
