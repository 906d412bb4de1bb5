package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// The naive tunnel is a reference, not a product: the smallest long-poll
// tunnel written with net/http and nothing else (no auth, no deadlines, no
// retries, no chain, no wire contract), run as two processes in the same
// topology as relay + agent. It shows what this machine allows for any
// relay-and-agent design built on Go's HTTP stack, so the tunnel's figures
// can be read against it (-naive).

type naiveCmd struct {
	ID   string          `json:"id"`
	Hdr  http.Header     `json:"h"`
	Body json.RawMessage `json:"b"`
}

type naiveReply struct {
	status int
	hdr    http.Header
	body   []byte
}

// naiveHeaders are the MCP headers the naive tunnel carries each way.
var naiveHeaders = []string{"Content-Type", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version"}

func copyNaive(dst, src http.Header) {
	for _, k := range naiveHeaders {
		if v := src[k]; len(v) > 0 {
			dst[k] = v
		}
	}
}

// runNaiveRelay serves POST /mcp for clients, GET /poll and POST /resp for
// the naive agent.
func runNaiveRelay(addr string) error {
	queue := make(chan *naiveCmd, 1024)
	var mu sync.Mutex
	waiting := map[string]chan naiveReply{}
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id := strconv.FormatInt(n.Add(1), 10)
		ch := make(chan naiveReply, 1)
		mu.Lock()
		waiting[id] = ch
		mu.Unlock()
		h := http.Header{}
		copyNaive(h, r.Header)
		queue <- &naiveCmd{ID: id, Hdr: h, Body: b}
		rep := <-ch
		copyNaive(w.Header(), rep.hdr)
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.body)
	})
	mux.HandleFunc("GET /poll", func(w http.ResponseWriter, r *http.Request) {
		cmds := []*naiveCmd{<-queue}
		for len(cmds) < 25 && len(queue) > 0 {
			cmds = append(cmds, <-queue)
		}
		b, _ := json.Marshal(cmds)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /resp", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		st, _ := strconv.Atoi(r.Header.Get("X-Status"))
		mu.Lock()
		ch := waiting[r.Header.Get("X-Id")]
		delete(waiting, r.Header.Get("X-Id"))
		mu.Unlock()
		if ch != nil {
			h := http.Header{}
			copyNaive(h, r.Header)
			ch <- naiveReply{status: st, hdr: h, body: b}
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	return http.ListenAndServe(addr, mux)
}

// runNaiveAgent polls relayURL and forwards each command to mcpURL with 64
// workers.
func runNaiveAgent(relayURL, mcpURL string) error {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	work := make(chan *naiveCmd, 128)
	for range 64 {
		go func() {
			for x := range work {
				req, _ := http.NewRequest(http.MethodPost, mcpURL, bytes.NewReader(x.Body))
				copyNaive(req.Header, x.Hdr)
				st, h, b := http.StatusBadGateway, http.Header{}, []byte(nil)
				if resp, err := c.Do(req); err == nil {
					b, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					st, h = resp.StatusCode, resp.Header
				}
				pr, _ := http.NewRequest(http.MethodPost, relayURL+"/resp", bytes.NewReader(b))
				copyNaive(pr.Header, h)
				pr.Header.Set("X-Id", x.ID)
				pr.Header.Set("X-Status", strconv.Itoa(st))
				if resp, err := c.Do(pr); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for {
		resp, err := c.Get(relayURL + "/poll")
		if err != nil {
			continue
		}
		var cmds []*naiveCmd
		_ = json.NewDecoder(resp.Body).Decode(&cmds)
		resp.Body.Close()
		for _, x := range cmds {
			work <- x
		}
	}
}

// runNaive starts the naive reference tunnel and loads it at every level.
func (b *bench) runNaive(echoURL string, out map[int]result) error {
	relayAddr := freeAddr()
	if err := b.startSelf("naive-relay", relayAddr, "-serve-naive-relay", relayAddr); err != nil {
		return err
	}
	if err := b.startSelf("naive-agent", "", "-serve-naive-agent", "http://"+relayAddr+","+echoURL); err != nil {
		return err
	}
	for _, c := range b.levels {
		r, err := b.load("naive", "-", "http://"+relayAddr+"/mcp", "", c)
		if err != nil {
			return err
		}
		out[c] = r
	}
	b.stopLast(2)
	return nil
}
