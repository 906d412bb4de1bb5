// Package natsq is the relay's Cluster on NATS: relay replicas that share
// tunnels share a JetStream work queue and talk to one another over core
// NATS request/reply.
//
//	MCP client ─POST─▶ replica A ─Push─▶ JetStream work queue ─Pull─▶ replica B ◀─poll─ agent
//	                      ▲  claim (request/reply) ◀──────────────────────┘
//	                      └───── deliver (request/reply) ◀── replica C ◀─POST response─ agent
//
// One stream (work-queue retention) holds every tunnel's commands under
// <prefix>.w.<tunnel>.<lane>, bounded per subject (a full lane refuses new
// commands: 429); one durable pull consumer per tunnel and lane is shared by
// every replica, so each command is delivered to one poll at a time and
// acknowledged when it is taken. Replicas answer on <prefix>.r.<id>
// (claims, put-backs, deliveries for the calls they own; offers of
// commands for their polls, and word that a hand-out was written, which
// take no answer), each in a goroutine of its own, hear <prefix>.b
// (liveness, lost agents) and answer <prefix>.ask (is an agent alive
// here?). The queue carries only what no poll takes at once: a replica
// hands its own commands to its own polls, and offers them to a replica
// with polls, without it (engine/relay's local.go and offer.go). See
// engine/relay's Cluster for what each message does.
package natsq
