package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// timeline records when each hop of a c=1 call happens, for -timeline: the
// relay's handler and the agent's two HTTP clients are wrapped in-process.
type timeline struct {
	mu     sync.Mutex
	start  time.Time
	events []event
}

type event struct {
	name string
	at   time.Duration
}

func (t *timeline) mark(name string) {
	t.mu.Lock()
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.events = append(t.events, event{name, time.Since(t.start)})
	t.mu.Unlock()
}

type markRT struct {
	tl   *timeline
	name string
	next http.RoundTripper
}

func (m markRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/poll") {
		resp, err := m.next.RoundTrip(r)
		m.tl.mark("agent: poll answered")
		return resp, err
	}
	m.tl.mark(m.name + " sent")
	resp, err := m.next.RoundTrip(r)
	m.tl.mark(m.name + " answered")
	return resp, err
}

func (t *timeline) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/mcp/"):
			t.mark("relay: MCP POST in")
			next.ServeHTTP(w, r)
			t.mark("relay: MCP reply written")
		case strings.HasSuffix(r.URL.Path, "/response"):
			t.mark("relay: response POST in")
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// report prints the mean gap between consecutive event kinds.
func (t *timeline) report() {
	t.mu.Lock()
	defer t.mu.Unlock()
	type gap struct {
		sum time.Duration
		n   int
	}
	gaps := map[string]*gap{}
	var order []string
	for i := 1; i < len(t.events); i++ {
		k := t.events[i-1].name + " → " + t.events[i].name
		g := gaps[k]
		if g == nil {
			g = &gap{}
			gaps[k] = g
			order = append(order, k)
		}
		g.sum += t.events[i].at - t.events[i-1].at
		g.n++
	}
	sort.Slice(order, func(i, j int) bool { return gaps[order[i]].n > gaps[order[j]].n })
	for _, k := range order {
		g := gaps[k]
		if g.n < 50 {
			continue
		}
		fmt.Printf("  %8.1f µs  (%6d×)  %s\n", float64(g.sum.Microseconds())/float64(g.n), g.n, k)
	}
}
