// Package inproc is the in-process binding: it serves an mcp-go
// *server.MCPServer in the same process, without sockets, by running the
// server's own Streamable HTTP handler behind an in-memory http.RoundTripper
// and reusing the http binding's streaming and classification on top. It is
// also the Go embedding API: build an MCPServer, wrap it with New, and the
// tunnel serves it.
package inproc
