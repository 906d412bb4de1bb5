// Package hostapi holds the functions the host provides to a plugin (log,
// config, key/value). The wasip1 build installs the real imports; natively the
// default host does nothing, and package sdktest installs fakes.
package hostapi
