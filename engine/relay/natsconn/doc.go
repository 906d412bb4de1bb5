// Package natsconn connects a relay to NATS: a client connection to an
// existing cluster (URLs, credentials or a token, TLS), or a NATS server
// started inside the process (with JetStream) for a relay that has none to
// join, and for tests.
//
// It knows nothing of the relay: the work queue (engine/relay/natsq) and the
// tunnel and key store build on the *nats.Conn it returns. Secrets arrive
// already resolved (the CLI turns env:/file: references into values) and are
// never logged; URLs are logged without their user information.
package natsconn
