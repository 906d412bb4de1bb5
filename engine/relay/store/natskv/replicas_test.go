package natskv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/store/natskv"
)

// replica is one relay on its own NATS connection to the shared bucket.
type replica struct {
	r *relay.Relay
}

func newReplica(t *testing.T, srv *server.Server) *replica {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := natskv.Open(context.Background(), js, natskv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{PublicURL: "http://relay.test"}, relay.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &replica{r: r}
}

// admin makes an admin API call on the replica.
func (p *replica) admin(t *testing.T, key, method, path, body string, out any) int {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	p.r.AdminHandler().ServeHTTP(rec, req)
	if out != nil && rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code
}

// polls is the replica's count of polls on tunnel (its metrics).
func (p *replica) polls(t *testing.T, tunnel string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.r.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, `sluice_relay_polls_total{tunnel="`+tunnel+`"} `); ok {
			return v
		}
	}
	return ""
}

// poll makes one short poll on the replica and returns its status and body.
func (p *replica) poll(tunnel, key string) (int, string) {
	req := httptest.NewRequest("GET", "/v1/tunnels/"+tunnel+"/poll?timeout_ms=1", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	p.r.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestRevocationAcrossReplicas: two relays share one JetStream bucket; a
// tunnel and key made on one work on the other, and a revocation on one
// takes effect on the other within a second, through the bucket's watch:
// a poll held on the other ends at once, and the next one is told why.
func TestRevocationAcrossReplicas(t *testing.T) {
	srv := startServer(t)
	a, b := newReplica(t, srv), newReplica(t, srv)
	key, err := a.r.Bootstrap(context.Background())
	if err != nil || key == "" {
		t.Fatalf("bootstrap: %q %v", key, err)
	}
	if k2, _ := b.r.Bootstrap(context.Background()); k2 != "" {
		t.Fatal("the second replica minted an admin key too")
	}
	var tn struct{ ID string }
	if st := a.admin(t, key, "POST", "/v1/tunnels", `{"name":"shared"}`, &tn); st != 200 {
		t.Fatalf("create tunnel: %d", st)
	}
	var rk struct{ ID, Value string }
	if st := a.admin(t, key, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"runtime","name":"agent"}`, &rk); st != 200 {
		t.Fatalf("create key: %d", st)
	}
	// The admin key and the new tunnel reach replica b through the watch.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := b.poll(tn.ID, rk.Value)
		if st == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b never accepted the new key: %d", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := b.admin(t, key, "GET", "/v1/tunnels/"+tn.ID, "", nil); st != 200 {
		t.Fatalf("admin key on replica b: %d", st)
	}

	// An agent's poll held on replica b when the key is revoked on a.
	type ended struct {
		status int
		body   string
		at     time.Time
	}
	held := make(chan ended, 1)
	before := b.polls(t, tn.ID)
	go func() {
		req := httptest.NewRequest("GET", "/v1/tunnels/"+tn.ID+"/poll?timeout_ms=20000", nil)
		req.Header.Set("Authorization", "Bearer "+rk.Value)
		rec := httptest.NewRecorder()
		b.r.Handler().ServeHTTP(rec, req)
		held <- ended{rec.Code, rec.Body.String(), time.Now()}
	}()
	for deadline := time.Now().Add(5 * time.Second); b.polls(t, tn.ID) == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held poll never reached replica b")
		}
	}

	start := time.Now()
	if st := a.admin(t, key, "DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil); st != 200 {
		t.Fatalf("revoke on a: %d", st)
	}
	select {
	case e := <-held:
		if e.status != http.StatusUnauthorized || !strings.Contains(e.body, "runtime key revoked at") {
			t.Fatalf("the poll held on replica b ended with %d %s", e.status, e.body)
		}
		if d := e.at.Sub(start); d > time.Second {
			t.Fatalf("the poll held on replica b ended %v after the revocation on a", d)
		}
		t.Logf("a poll held on replica b ended %v after the revocation on a", e.at.Sub(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the poll held on replica b outlived the revocation on a")
	}
	for {
		st, body := b.poll(tn.ID, rk.Value)
		if st == http.StatusUnauthorized {
			if !strings.Contains(body, "runtime key revoked at") || !strings.Contains(body, `"code":"tunnel_use_forbidden"`) {
				t.Fatalf("replica b refused without the reason: %s", body)
			}
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("replica b still accepts the key %v after its revocation on a", time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("revocation on replica a took effect on replica b after %v", time.Since(start).Round(time.Millisecond))

	// Deleting the tunnel on b removes it from a.
	if st := b.admin(t, key, "DELETE", "/v1/tunnels/"+tn.ID, "", nil); st != 200 {
		t.Fatalf("delete on b: %d", st)
	}
	deadline = time.Now().Add(time.Second)
	for a.admin(t, key, "GET", "/v1/tunnels/"+tn.ID, "", nil) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("replica a still serves a tunnel deleted on b")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBucketHoldsOnlyHashes: after keys of every scope were made through a
// replica (and one revoked), neither the bucket's messages nor any file of
// the NATS server's store directory hold a key: only their SHA-256.
func TestBucketHoldsOnlyHashes(t *testing.T) {
	srv := startServer(t)
	a := newReplica(t, srv)
	adminKey, err := a.r.Bootstrap(context.Background())
	if err != nil || adminKey == "" {
		t.Fatalf("bootstrap: %q %v", adminKey, err)
	}
	var tn struct{ ID string }
	if st := a.admin(t, adminKey, "POST", "/v1/tunnels", `{"name":"secrets"}`, &tn); st != 200 {
		t.Fatalf("create tunnel: %d", st)
	}
	keys := []string{adminKey}
	var revoke string
	for _, body := range []string{`{"scope":"runtime","name":"a"}`, `{"scope":"client","name":"c"}`, `{"scope":"runtime","name":"old"}`} {
		var k struct{ ID, Value string }
		if st := a.admin(t, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", body, &k); st != 200 {
			t.Fatalf("create key: %d", st)
		}
		keys, revoke = append(keys, k.Value), k.ID
	}
	if st := a.admin(t, adminKey, "DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+revoke, "", nil); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	var second struct{ Value string }
	if st := a.admin(t, adminKey, "POST", "/v1/organization/admin_api_keys", `{"name":"ops"}`, &second); st != 200 {
		t.Fatalf("admin key: %d", st)
	}
	keys = append(keys, second.Value)

	// The bucket's messages, as any NATS client reads them.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), "KV_"+natskv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := stream.Info(context.Background())
	var msgs []byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := stream.GetMsg(context.Background(), seq); err == nil {
			msgs = append(append(msgs, m.Subject...), m.Data...)
		}
	}
	hashesOnly(t, "bucket", msgs, keys)

	// The server's files (written asynchronously: wait for the last hash).
	dir := srv.JetStreamConfig().StoreDir
	var files []byte
	last := sha256.Sum256([]byte(second.Value))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		files = files[:0]
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				files = append(files, b...)
			}
			return nil
		})
		if bytes.Contains(files, []byte(hex.EncodeToString(last[:]))) || time.Now().After(deadline) {
			break
		}
	}
	hashesOnly(t, "store directory", files, keys)
}

// hashesOnly checks that blob holds none of keys (not even the part a
// redacted key hides) and each key's SHA-256.
func hashesOnly(t *testing.T, where string, blob []byte, keys []string) {
	t.Helper()
	for _, k := range keys {
		body := k[strings.LastIndexByte(k, '_')+1:]
		if bytes.Contains(blob, []byte(k)) || bytes.Contains(blob, []byte(body[4:len(body)-4])) {
			t.Errorf("%s: holds the key %.11s…", where, k)
		}
		sum := sha256.Sum256([]byte(k))
		if !bytes.Contains(blob, []byte(hex.EncodeToString(sum[:]))) {
			t.Errorf("%s: does not hold the hash of %.11s…: the wrong bytes?", where, k)
		}
	}
}
