// Package sdktest runs Sluice plugins natively, without Wasm, so their logic is
// unit-tested with plain `go test`. Messages go through the real envelope and
// answer codecs; config, logs and the key/value store are fakes held by an Env.
//
// The sdk keeps module-wide state (as a Wasm module does), so runs are
// serialized: tests using sdktest may call t.Parallel, but their plugin calls
// execute one at a time.
package sdktest
