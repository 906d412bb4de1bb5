package host

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The extism:host/user functions the host gives every Extism guest: the
// same key/value store native guests reach through sluice.kv_* (shared by
// all instances of the plugin). Arguments and results are Extism memory
// offsets, as in every Extism host function; the host does not free the
// blocks a guest passes in (the kernel's memory is reset before each call).
const (
	// ExtismKVGet is kv_get(key i64) -> i64: the offset of a new block
	// holding the value, or 0 when the key is absent.
	ExtismKVGet = "kv_get"
	// ExtismKVSet is kv_set(key i64, value i64): set a key.
	ExtismKVSet = "kv_set"
	// ExtismKVDelete is kv_delete(key i64): delete a key.
	ExtismKVDelete = "kv_delete"
)

// extismUserSigs are the signatures of the extism:host/user functions.
var extismUserSigs = map[string]sig{
	ExtismKVGet:    {[]api.ValueType{i64}, []api.ValueType{i64}},
	ExtismKVSet:    {[]api.ValueType{i64, i64}, nil},
	ExtismKVDelete: {[]api.ValueType{i64}, nil},
}

// extismUserNames lists the extism:host/user functions for error messages.
func extismUserNames() string {
	names := make([]string, 0, len(extismUserSigs))
	for n := range extismUserSigs {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// kernelBlock returns the block at off or traps naming the function.
func kernelBlock(k *kernel, off uint64, fn string) []byte {
	b, ok := k.bytes(off)
	if !ok {
		panic(fmt.Errorf("%s.%s: offset %d is not an allocated block", ModuleExtismUser, fn, off))
	}
	return b
}

// instantiateExtismUser provides the extism:host/user module for stage s.
func instantiateExtismUser(ctx context.Context, rt wazero.Runtime, s *Stage) error {
	b := rt.NewHostModuleBuilder(ModuleExtismUser)
	fn := func(name string, f api.GoFunc) {
		sg := extismUserSigs[name]
		b.NewFunctionBuilder().WithGoFunction(f, sg.params, sg.results).Export(name)
	}
	fn(ExtismKVGet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		v, ok := s.kv.get(kernelBlock(k, st[0], ExtismKVGet))
		if !ok {
			st[0] = 0
			return
		}
		st[0] = k.write(v)
	})
	fn(ExtismKVSet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		if err := s.kv.set(kernelBlock(k, st[0], ExtismKVSet), kernelBlock(k, st[1], ExtismKVSet)); err != nil {
			panic(fmt.Errorf("%s.%s: %w", ModuleExtismUser, ExtismKVSet, err))
		}
	})
	fn(ExtismKVDelete, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		s.kv.delete(kernelBlock(k, st[0], ExtismKVDelete))
	})
	_, err := b.Instantiate(ctx)
	return err
}
