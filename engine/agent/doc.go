// Package agent is the core of `sluice run`: it long-polls the relay (or OpenAI's
// hosted tunnel service) for MCP work, runs each command down the agent's plugin
// chain to a binding (the private MCP server), runs every message the server
// produces back up the chain, and posts it to the relay.
//
//	relay ──poll──▶ buffer (max-inflight) ──▶ workers (max-concurrent) ──▶ chain ──▶ binding
//	relay ◀─POST response (notify…, final)── chain ◀── each reply ◀────────────────┘
//
// One poll is outstanding whenever the local buffer has room and only then;
// commands complete out of order; response_timeout deadlines bound the MCP call
// and the response POSTs; cancellation of Run's context drains gracefully.
// The agent also serves /healthz, /readyz and /metrics (HealthHandler).
package agent
