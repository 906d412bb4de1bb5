package natsq

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
)

// Defaults of Options.
const (
	DefaultPrefix = "sluice"
	DefaultStream = "SLUICE_WORK"
	// DefaultMaxAge drops commands nobody polled for that long (no agent
	// has been connected to their tunnel); their callers timed out long
	// before.
	DefaultMaxAge = time.Hour
)

// sessionTTL is how long a session pin lives: MCP sessions idle that long
// are gone from their servers.
const sessionTTL = 24 * time.Hour

// fetchChunk bounds one pull request of a lane's puller: while polls wait
// it asks again after each.
const fetchChunk = 2 * time.Second

// ackWait is how long JetStream waits for the acknowledgement of a
// delivered command before delivering it again. Commands are acknowledged
// as soon as they arrive, so it only matters when a replica dies between
// the two (then it is the wait of the commands its puller held: 1 s rather
// than 2 took the fault suite's failover p99 from 1.7 to 1.6 s, median of
// three); a redelivered command is still handed out at most once (the
// owner's claim decides).
const ackWait = time.Second

// Options configure a Queue. The zero value of each field is its default.
type Options struct {
	// Prefix starts every subject (default "sluice"): replicas with the
	// same prefix and stream form one cluster.
	Prefix string
	// Stream is the JetStream stream's name (default StreamName(Prefix):
	// "SLUICE_WORK" for the default prefix).
	Stream string
	// Replicas is the stream's replication factor (0: 3 when the client
	// knows of three servers or more, else 1).
	Replicas int
	// QueueSize bounds each tunnel's lane (default relay.DefaultQueueSize).
	QueueSize int
	// MaxAge drops commands queued that long (default DefaultMaxAge).
	MaxAge time.Duration
	// Logger receives the queue's warnings (nil: discard).
	Logger *slog.Logger
}

// Queue is a relay.Cluster on a NATS connection. Create it with New.
type Queue struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	id     string
	prefix string
	stream string
	log    *slog.Logger

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer
	pullers   map[string]*puller
	subs      []*nats.Subscription

	// silent are the replicas a Call found without a responder, since when
	// (the first such answer since it last answered). One silent for
	// noRespondersGrace is gone: a Call to it fails at once until it
	// answers again, a broadcast of it arrives, or goneFor passes.
	silentMu sync.Mutex
	silent   map[string]time.Time
}

// noRespondersGrace is how long a replica may have no responder before a
// Call counts it gone. A replica whose NATS node died has none while it
// reconnects to another node and its subscription reaches the others'
// nodes; a claim or a delivery counted "gone" then would be dropped.
const noRespondersGrace = 500 * time.Millisecond

// goneFor is how long a replica stays silent without new proof (replica
// ids are never reused; this bounds the table, and the cost of a replica
// that was only cut off).
const goneFor = time.Minute

// Interface guards
var _ relay.Cluster = (*Queue)(nil)

// New creates (or updates) the work-queue stream on nc and returns a
// Queue with a fresh replica id. nc stays the caller's: Close does not
// close it.
func New(ctx context.Context, nc *nats.Conn, o Options) (*Queue, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Stream == "" {
		o.Stream = StreamName(o.Prefix)
	}
	if o.QueueSize == 0 {
		o.QueueSize = relay.DefaultQueueSize
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Replicas == 0 {
		o.Replicas = 1
		if len(nc.Servers()) >= 3 {
			o.Replicas = 3
		}
	}
	switch {
	case o.QueueSize < 0:
		return nil, errors.New("natsq: queue size: must not be negative")
	case o.Replicas < 0 || o.Replicas > 5:
		return nil, fmt.Errorf("natsq: replicas %d: must be 1 to 5", o.Replicas)
	case !validPrefix(o.Prefix):
		return nil, fmt.Errorf("natsq: prefix %q: must be subject tokens without wildcards", o.Prefix)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsq: jetstream: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := jetstream.StreamConfig{
		Name:                 o.Stream,
		Description:          "sluice relay work queue: commands waiting for an agent poll",
		Subjects:             []string{o.Prefix + ".w.>"},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Replicas:             o.Replicas,
		MaxMsgsPerSubject:    int64(o.QueueSize),
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxAge:               o.MaxAge,
	}
	// A cluster that is starting (no JetStream leader yet) answers with
	// time-outs for a while: each step is tried again until it can.
	err = natsconn.Setup(ctx, log, "stream "+o.Stream, 0, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natsq: create stream %s (replicas %d): %w", o.Stream, o.Replicas, err)
	}
	var kv jetstream.KeyValue
	err = natsconn.Setup(ctx, log, "key-value bucket "+o.Stream+"_SESSIONS", 0, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.Stream + "_SESSIONS",
			Description: "sluice relay: MCP sessions pinned to the agent instance whose process holds them",
			TTL:         sessionTTL,
			Replicas:    o.Replicas,
			Storage:     jetstream.FileStorage,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natsq: create key-value bucket %s_SESSIONS: %w", o.Stream, err)
	}
	return &Queue{
		nc: nc, js: js, kv: kv, id: newID(), prefix: o.Prefix, stream: o.Stream, log: log,
		consumers: make(map[string]jetstream.Consumer),
		pullers:   make(map[string]*puller),
	}, nil
}

// StreamName is the work-queue stream of the replicas that share prefix:
// DefaultStream for DefaultPrefix, else the prefix upper-cased with every
// character outside [A-Z0-9_-] made "_", then "_WORK". Two relay clusters
// with different prefixes on one NATS so never share (or reconfigure) a
// stream.
func StreamName(prefix string) string {
	if prefix == "" || prefix == DefaultPrefix {
		return DefaultStream
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, prefix) + "_WORK"
}

func validPrefix(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, " *>") {
			return false
		}
	}
	return true
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID implements relay.Cluster.
func (q *Queue) ID() string { return q.id }

func (q *Queue) subject(tunnel string, lane relay.Lane) string {
	return q.prefix + ".w." + tunnel + "." + string(lane)
}

// Push implements relay.Cluster. A publish that fails on the way (a NATS
// node failing over) is tried again until ctx ends, under a message id
// JetStream deduplicates, so the item is queued once per Push.
func (q *Queue) Push(ctx context.Context, tunnel string, lane relay.Lane, item []byte) error {
	id := newID() + newID() // one per push: a put-back is a new message
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := q.js.Publish(actx, q.subject(tunnel, lane), item, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			if strings.Contains(strings.ToLower(apiErr.Description), "maximum messages per subject") {
				return relay.ErrQueueFull
			}
			return fmt.Errorf("natsq: push to %s: %w", tunnel, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsq: push to %s: %w", tunnel, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// attemptTimeout bounds one try of a publish.
const attemptTimeout = 1500 * time.Millisecond

// consumer returns the shared pull consumer of a tunnel's lane, creating
// it on first use.
func (q *Queue) consumer(ctx context.Context, tunnel string, lane relay.Lane) (jetstream.Consumer, error) {
	name := "w_" + tunnel + "_" + string(lane)
	q.mu.Lock()
	c := q.consumers[name]
	q.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := q.js.CreateOrUpdateConsumer(ctx, q.stream, jetstream.ConsumerConfig{
		Durable:           name,
		FilterSubject:     q.subject(tunnel, lane),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           ackWait,
		MaxWaiting:        4096,
		MaxAckPending:     -1,
		InactiveThreshold: 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("natsq: consumer for %s: %w", tunnel, err)
	}
	q.mu.Lock()
	q.consumers[name] = c
	q.mu.Unlock()
	return c, nil
}

// forget drops a cached consumer that the server no longer has.
func (q *Queue) forget(tunnel string, lane relay.Lane, err error) {
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
		q.mu.Lock()
		delete(q.consumers, "w_"+tunnel+"_"+string(lane))
		q.mu.Unlock()
	}
}

// Pull implements relay.Cluster: the first item of any lane within wait
// (from the lane's puller: at once when the lane holds one; with a wait of
// 0, only one a puller offers now), then, when its lane holds more, what
// is ready there.
func (q *Queue) Pull(ctx context.Context, tunnel string, lanes []relay.Lane, limit int, wait time.Duration) ([]relay.Pulled, error) {
	for _, l := range lanes {
		if _, err := q.consumer(ctx, tunnel, l); err != nil {
			return nil, err
		}
	}
	first, lane := q.waitFirst(ctx, tunnel, lanes, wait)
	if first == nil {
		return nil, nil
	}
	msgs := []jetstream.Msg{first}
	var err error
	if meta, merr := first.Metadata(); limit > 1 && ctx.Err() == nil && (merr != nil || meta.NumPending > 0) {
		var more []jetstream.Msg
		more, err = q.ready(tunnel, lane, limit-1)
		msgs = append(msgs, more...)
	}
	// The caller acknowledges each (a jetstream.Msg is a relay.Pulled). A
	// lost acknowledgement means a second delivery, which the owner's
	// claim refuses.
	out := make([]relay.Pulled, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out, err
}

// ready takes up to limit items the lane holds now.
func (q *Queue) ready(tunnel string, lane relay.Lane, limit int) ([]jetstream.Msg, error) {
	c, err := q.consumer(context.Background(), tunnel, lane)
	if err != nil {
		return nil, err
	}
	b, err := c.FetchNoWait(limit)
	if err != nil {
		q.forget(tunnel, lane, err)
		return nil, fmt.Errorf("natsq: pull from %s: %w", tunnel, err)
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	if err := b.Error(); err != nil {
		q.forget(tunnel, lane, err)
		return out, fmt.Errorf("natsq: pull from %s: %w", tunnel, err)
	}
	return out, nil
}

// puller is the one pull loop of a tunnel's lane on this replica: while
// polls wait on the lane here, it keeps a pull request open on the shared
// consumer and hands each item that arrives to one waiting poll, or back to
// the queue (Nak) when none takes it at once. So a replica holds one pull
// request per lane however many polls wait, and a poll that ends leaves
// nothing behind on the server.
type puller struct {
	q      *Queue
	tunnel string
	lane   relay.Lane

	mu      sync.Mutex
	waiters int
	running bool
	out     chan jetstream.Msg // unbuffered: an item goes to a poll that waits
}

// handOff is how long an arriving item may wait for a poll to take it
// before it goes back to the queue.
const handOff = 20 * time.Millisecond

// pullerFor returns the lane's puller, creating it.
func (q *Queue) pullerFor(tunnel string, lane relay.Lane) *puller {
	key := tunnel + "/" + string(lane)
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pullers[key]
	if p == nil {
		p = &puller{q: q, tunnel: tunnel, lane: lane, out: make(chan jetstream.Msg)}
		q.pullers[key] = p
	}
	return p
}

// wait registers a waiting poll; done unregisters one that was not served
// (hand unregisters the one it serves, before pulling again).
func (p *puller) wait() {
	p.mu.Lock()
	p.waiters++
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go p.loop()
	}
}

func (p *puller) done() {
	p.mu.Lock()
	p.waiters--
	p.mu.Unlock()
}

// loop pulls while polls wait, then ends.
func (p *puller) loop() {
	for {
		p.mu.Lock()
		n := p.waiters
		if n <= 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		c, err := p.q.consumer(context.Background(), p.tunnel, p.lane)
		if err == nil {
			var b jetstream.MessageBatch
			if b, err = c.Fetch(min(n, 64), jetstream.FetchMaxWait(fetchChunk)); err == nil {
				for m := range b.Messages() {
					p.hand(m)
				}
				err = b.Error()
			}
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) {
			p.q.forget(p.tunnel, p.lane, err)
			p.q.log.Warn("natsq: pull failed", "tunnel", p.tunnel, "err", err)
			time.Sleep(250 * time.Millisecond) // a NATS failover: do not spin
		}
	}
}

// hand gives m to a waiting poll, or back to the queue.
func (p *puller) hand(m jetstream.Msg) {
	t := time.NewTimer(handOff)
	defer t.Stop()
	select {
	case p.out <- m:
		p.done()
	case <-t.C:
		_ = m.Nak()
	}
}

// waitFirst waits up to wait for the first item of any lane (at most
// three), and says which lane it came from.
func (q *Queue) waitFirst(ctx context.Context, tunnel string, lanes []relay.Lane, wait time.Duration) (jetstream.Msg, relay.Lane) {
	var (
		chans [3]<-chan jetstream.Msg // a nil channel never delivers
		ps    [3]*puller
	)
	n := min(len(lanes), len(chans))
	for i, l := range lanes[:n] {
		ps[i] = q.pullerFor(tunnel, l)
		ps[i].wait()
		chans[i] = ps[i].out
	}
	served := -1
	leave := func() {
		for i := range n {
			if i != served {
				ps[i].done()
			}
		}
	}
	defer leave()
	var m jetstream.Msg
	if wait <= 0 {
		select {
		case m = <-chans[0]:
			served = 0
		case m = <-chans[1]:
			served = 1
		case m = <-chans[2]:
			served = 2
		default:
			return nil, ""
		}
		return m, lanes[served]
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case m = <-chans[0]:
		served = 0
	case m = <-chans[1]:
		served = 1
	case m = <-chans[2]:
		served = 2
	case <-ctx.Done():
		return nil, ""
	case <-timer.C:
		return nil, ""
	}
	return m, lanes[served]
}

// Send implements relay.Cluster.
func (q *Queue) Send(replica string, msg []byte) error {
	if err := q.nc.Publish(q.prefix+".r."+replica, msg); err != nil {
		return fmt.Errorf("natsq: send to replica %s: %w", replica, err)
	}
	return nil
}

// Call implements relay.Cluster. A replica without a responder is asked
// again until it has been silent for noRespondersGrace (counted across
// calls), then it is gone.
func (q *Queue) Call(ctx context.Context, replica string, msg []byte) ([]byte, error) {
	for {
		m, err := q.nc.RequestWithContext(ctx, q.prefix+".r."+replica, msg)
		if err == nil {
			q.heard(replica)
			return m.Data, nil
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("natsq: call replica %s: %w", replica, err)
		}
		if now := time.Now(); now.Sub(q.silentSince(replica, now)) >= noRespondersGrace {
			return nil, relay.ErrNoReplica
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("natsq: call replica %s: no responder yet: %w", replica, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// silentSince notes that replica had no responder at now and returns since
// when it has been silent (and forgets silences older than goneFor).
func (q *Queue) silentSince(replica string, now time.Time) time.Time {
	q.silentMu.Lock()
	defer q.silentMu.Unlock()
	if q.silent == nil {
		q.silent = make(map[string]time.Time)
	}
	for id, at := range q.silent {
		if now.Sub(at) >= goneFor {
			delete(q.silent, id)
		}
	}
	at, ok := q.silent[replica]
	if !ok {
		at = now
		q.silent[replica] = at
	}
	return at
}

// heard ends replica's silence: it answered, or a broadcast of it arrived.
func (q *Queue) heard(replica string) {
	q.silentMu.Lock()
	if len(q.silent) > 0 {
		delete(q.silent, replica)
	}
	q.silentMu.Unlock()
}

// fromHeader names the sending replica of broadcasts and questions, which
// the sender's own subscription skips.
const fromHeader = "Sluice-Replica"

// Broadcast implements relay.Cluster.
func (q *Queue) Broadcast(msg []byte) error {
	m := nats.NewMsg(q.prefix + ".b")
	m.Header.Set(fromHeader, q.id)
	m.Data = msg
	return q.nc.PublishMsg(m)
}

// Ask implements relay.Cluster: only a yes is answered, so the first
// answer is the verdict and silence until wait is no.
func (q *Queue) Ask(ctx context.Context, msg []byte, wait time.Duration) (bool, error) {
	m := nats.NewMsg(q.prefix + ".ask")
	m.Header.Set(fromHeader, q.id)
	m.Data = msg
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, err := q.nc.RequestMsgWithContext(ctx, m)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		return false, nil
	}
	return false, fmt.Errorf("natsq: ask: %w", err)
}

// Handle implements relay.Cluster.
func (q *Queue) Handle(h relay.ClusterHandler) {
	subscribe := func(subject string, cb nats.MsgHandler) {
		s, err := q.nc.Subscribe(subject, cb)
		if err != nil {
			q.log.Error("natsq: subscribe", "subject", subject, "err", err)
			return
		}
		_ = s.SetPendingLimits(-1, 256<<20)
		q.mu.Lock()
		q.subs = append(q.subs, s)
		q.mu.Unlock()
	}
	subscribe(q.prefix+".r."+q.id, func(m *nats.Msg) {
		// Each in its own goroutine: an offer is answered only once a poll
		// took it, and the other replicas' calls do not queue behind one
		// another.
		go func() {
			ans := h.HandleCall(m.Data)
			if m.Reply != "" { // a Send has none
				_ = m.Respond(ans)
			}
		}()
	})
	subscribe(q.prefix+".b", func(m *nats.Msg) {
		if from := m.Header.Get(fromHeader); from != q.id {
			q.heard(from)
			h.HandleBroadcast(m.Data)
		}
	})
	subscribe(q.prefix+".ask", func(m *nats.Msg) {
		if m.Header.Get(fromHeader) != q.id && h.HandleAsk(m.Data) {
			_ = m.Respond([]byte("1"))
		}
	})
	_ = q.nc.Flush()
}

// Close stops answering the other replicas (the connection stays open).
func (q *Queue) Close() error {
	q.mu.Lock()
	subs := q.subs
	q.subs = nil
	q.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	return nil
}

// sessionKey is a pin's key: the tunnel and a hash of the session id
// (which may hold characters a key may not).
func sessionKey(tunnel, session string) string {
	sum := sha256.Sum256([]byte(session))
	return tunnel + "." + hex.EncodeToString(sum[:16])
}

// PinSession implements relay.Cluster.
func (q *Queue) PinSession(ctx context.Context, tunnel, session, instance string) error {
	if _, err := q.kv.Put(ctx, sessionKey(tunnel, session), []byte(instance)); err != nil {
		return fmt.Errorf("natsq: pin session: %w", err)
	}
	return nil
}

// SessionPin implements relay.Cluster.
func (q *Queue) SessionPin(ctx context.Context, tunnel, session string) (string, error) {
	e, err := q.kv.Get(ctx, sessionKey(tunnel, session))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("natsq: read session pin: %w", err)
	}
	return string(e.Value()), nil
}
