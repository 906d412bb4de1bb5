// Package plugins ships the first-party plugins inside the binary: each
// plugins/<name>/<name>.wasm, built from plugins/<name>/cmd by build.sh and
// checked against its source by check.sh, is embedded here so `go install`
// alone gives a complete product.
//
// The logic of each plugin is a native, importable package (plugins/redact,
// plugins/headers, plugins/oauthmeta, plugins/toolguard) unit-tested with
// plain `go test`; its cmd/ directory is the wasip1 entry point that
// registers it with the sdk.
package plugins
