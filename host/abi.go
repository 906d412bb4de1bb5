package host

// ABI constants, all in one place. The native ABI is specified byte for byte
// in sdk/ABI.md; the Extism names follow the same page.

// Native ABI version this host implements.
const (
	NativeABIVersion = 1 // value sluice_abi_version must return
	EnvelopeVersion  = 1 // u32 at offset 0 of every envelope
)

// Native ABI exports.
const (
	ExportMemory         = "memory"
	ExportABIVersion     = "sluice_abi_version"
	ExportAlloc          = "sluice_alloc"
	ExportDescribe       = "sluice_describe"
	ExportOnRequest      = "sluice_on_request"
	ExportOnResponse     = "sluice_on_response"
	ExportOnHTTPResponse = "sluice_on_http_response"
	ExportInitialize     = "_initialize"
)

// Import namespaces.
const (
	ModuleSluice     = "sluice"                 // the native host functions
	ModuleWASI       = "wasi_snapshot_preview1" // WASI, provided only when imported
	ModuleExtismEnv  = "extism:host/env"        // the Extism kernel; its presence selects the Extism ABI
	ModuleExtismUser = "extism:host/user"       // Extism user host functions (none are provided)
)

// Native ABI imports (module sluice).
const (
	ImportLog      = "log"       // (level i32, ptr i32, len i32)
	ImportConfig   = "config"    // (ptr i32, cap i32) -> i32
	ImportKVGet    = "kv_get"    // (kptr, klen, vptr, vcap i32) -> i32
	ImportKVSet    = "kv_set"    // (kptr, klen, vptr, vlen i32)
	ImportKVDelete = "kv_delete" // (kptr, klen i32)
)

// Extism ABI exports (Extism functions, () -> i32).
const (
	ExtismDescribe       = "describe"
	ExtismOnRequest      = "on_request"
	ExtismOnResponse     = "on_response"
	ExtismOnHTTPResponse = "on_http_response"
	// ExtismConfigKey is the Extism config key holding the whole plugin config as JSON.
	ExtismConfigKey = "sluice.config"
)

// Envelope layout (host → guest).
const (
	envOffVersion = 0  // u32
	envOffHook    = 4  // u8: engine.Hook values
	envOffFlags   = 5  // u8
	envOffStatus  = 8  // u32
	envOffStrings = 12 // seven strings follow
	envStrings    = 7  // tunnel, channel, session, request id, method, tool, caller

	envFlagNotification = 1 << 0
	envFlagRelay        = 1 << 1
)

// Answer layout (guest → host).
const (
	ansOffAction  = 0 // u8: engine.Action values
	ansOffFlags   = 1 // u8
	ansOffStatus  = 4 // u32
	ansOffHeaders = 8 // u32 header-edit count, then edits
	ansMinLen     = 12

	ansFlagBody = 1 << 0

	// Header-edit ops.
	headerOpSet    = 1
	headerOpAdd    = 2
	headerOpDelete = 3
)

// Log levels of the sluice.log import.
const (
	logDebug = 0
	logInfo  = 1
	logWarn  = 2
	logError = 3
)

// Binding plugins: a module that is the MCP server of a channel (sdk/ABI.md,
// "Binding plugins"). The call's input is an envelope (same layout as a
// filter's) with hook HookCall; its output is a reply in the answer layout.
const (
	// ExportOnCall handles one MCP request of the channel and returns its
	// final reply: (ptr i32, len i32) -> i64, like the filter handlers.
	ExportOnCall = "sluice_on_call"
	// HookCall is the envelope's hook byte for a binding call.
	HookCall = 4

	// envFlagSessionEnd marks a binding call that ends the session named by
	// the envelope's session id (an HTTP DELETE); the body is empty.
	envFlagSessionEnd = 1 << 2
)

// Binding imports (module sluice). Each is gated by the binding's config;
// a module without a binding config gets HostErrDenied from all but result.
const (
	ImportEmit        = "emit"         // (ptr, len i32) -> i32: stream one notification now
	ImportHTTPRequest = "http_request" // (req_ptr, req_len, out_ptr, out_cap i32) -> i32
	ImportProcess     = "process"      // (name_ptr, name_len, in_ptr, in_len, out_ptr, out_cap i32) -> i32
	ImportResult      = "result"       // (ptr, cap i32) -> i32: the pending result of the last host call
)

// Negative results of emit, http_request and process. The pending result
// (read with result) then holds a one-line UTF-8 message saying why.
const (
	HostErrDenied   = -1 // not allowed by the config: a host off the allow-list, a process not configured
	HostErrInvalid  = -2 // the guest's input is malformed (a bad URL, not a notification, …)
	HostErrFailed   = -3 // the operation failed (connection refused, the process exited, …)
	HostErrTooLarge = -4 // the response or output exceeds the configured limit
	HostErrTimeout  = -5 // the operation timed out or the call was cancelled
)
