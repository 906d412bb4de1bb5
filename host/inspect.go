package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// refusal says why the host refuses the function import module.name with
// signature got, for a module of the Extism ABI or the native one; "" means
// the host provides it.
func refusal(extism bool, module, name string, got sig) string {
	var want sig
	var ok bool
	switch {
	case module == ModuleWASI:
		return ""
	case !extism && module == ModuleSluice:
		if want, ok = hostImports[name]; !ok {
			return fmt.Sprintf("unknown import %s.%s", module, name)
		}
	case extism && module == ModuleExtismEnv:
		if want, ok = extismEnvSigs[name]; !ok {
			return fmt.Sprintf("unknown import %s.%s (not an Extism kernel function)", module, name)
		}
	case extism && module == ModuleExtismUser:
		if want, ok = extismUserSigs[name]; !ok {
			return fmt.Sprintf("unknown import %s.%s (the host provides %s)", module, name, extismUserNames())
		}
	case extism:
		hint := ""
		if module == "env" && name == "abort" {
			hint = "; build AssemblyScript with --use abort=FILE/FUNCTION"
		}
		return fmt.Sprintf("forbidden import %s.%s (an Extism plugin may import only %s, %s and %s%s)",
			module, name, ModuleExtismEnv, ModuleExtismUser, ModuleWASI, hint)
	default:
		return fmt.Sprintf("forbidden import %s.%s (a plugin may import only %s and %s)", module, name, ModuleSluice, ModuleWASI)
	}
	if !got.equal(want) {
		return fmt.Sprintf("import %s.%s has signature %s, want %s", module, name, got, want)
	}
	return ""
}

// checkImports checks every import of c against what the host provides for
// its ABI; the error names the first one it refuses. wasi reports whether c
// imports WASI.
func checkImports(c wazero.CompiledModule, extism bool) (wasi bool, err error) {
	for _, f := range c.ImportedFunctions() {
		m, n, _ := f.Import()
		if r := refusal(extism, m, n, sigOf(f)); r != "" {
			return false, errors.New(r)
		}
		wasi = wasi || m == ModuleWASI
	}
	for _, mem := range c.ImportedMemories() {
		m, n, _ := mem.Import()
		return false, fmt.Errorf("forbidden memory import %s.%s", m, n)
	}
	return wasi, nil
}

// ModuleInfo describes a plugin module as the host sees it.
type ModuleInfo struct {
	// Size is the module's size in bytes; SHA256 its hex digest (what a
	// pipeline entry's sha256 pins).
	Size   int
	SHA256 string
	// ABI is "native", "extism", or "" when the module has the marks of
	// neither.
	ABI string
	// ABIVersion is what sluice_abi_version returned (native ABI; 0 when the
	// module did not load).
	ABIVersion int
	// Description is the plugin's describe output; nil without one.
	Description *Description
	// Imports and Exports list the module's function and memory imports and
	// exports in module order (exports by name).
	Imports []ImportInfo
	Exports []ExportInfo
	// MemoryPages is the initial size of the module's memory in 64 KiB pages.
	MemoryPages uint32
	// InstanceMemory is the memory of one fresh instance in bytes (0 when
	// the module did not load).
	InstanceMemory uint64
	// LoadError is why the host refuses to load the module; nil when it
	// loads.
	LoadError error
}

// Description is a plugin's description document (sdk/ABI.md).
type Description struct {
	Name, Version          string
	Hooks, Methods, Config []string
}

// ImportInfo is one import of a module.
type ImportInfo struct {
	Module, Name string
	// Kind is "func" or "memory"; Signature the function's signature.
	Kind, Signature string
	// Refused is why the host refuses it; "" when the host provides it.
	Refused string
}

// ExportInfo is one export of a module.
type ExportInfo struct {
	Name            string
	Kind, Signature string
}

// Inspect describes the module bin (named name in errors) and tries to load
// it as a stage with config cfg; the module is never called beyond what a
// load does (sluice_abi_version, describe, initialisation). The error is
// only for a module that is not valid WebAssembly.
func (r *Runtime) Inspect(ctx context.Context, name string, bin []byte, cfg map[string]any) (*ModuleInfo, error) {
	sum := sha256.Sum256(bin)
	info := &ModuleInfo{Size: len(bin), SHA256: hex.EncodeToString(sum[:])}
	wrt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(r.cache))
	defer wrt.Close(ctx)
	c, err := wrt.CompileModule(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("host: inspect %q: %w", name, firstLine(err))
	}
	extism := importsModule(c, ModuleExtismEnv)
	exports := c.ExportedFunctions()
	switch _, native := exports[ExportABIVersion]; {
	case extism:
		info.ABI = "extism"
	case native:
		info.ABI = "native"
	}
	for _, f := range c.ImportedFunctions() {
		m, n, _ := f.Import()
		info.Imports = append(info.Imports, ImportInfo{Module: m, Name: n, Kind: "func", Signature: sigOf(f).String(),
			Refused: refusal(extism, m, n, sigOf(f))})
	}
	for _, mem := range c.ImportedMemories() {
		m, n, _ := mem.Import()
		info.Imports = append(info.Imports, ImportInfo{Module: m, Name: n, Kind: "memory",
			Refused: fmt.Sprintf("forbidden memory import %s.%s", m, n)})
	}
	for n, d := range exports {
		info.Exports = append(info.Exports, ExportInfo{Name: n, Kind: "func", Signature: sigOf(d).String()})
	}
	for n, d := range c.ExportedMemories() {
		info.Exports = append(info.Exports, ExportInfo{Name: n, Kind: "memory", Signature: memorySig(d)})
		info.MemoryPages = d.Min()
	}
	slices.SortFunc(info.Exports, func(a, b ExportInfo) int { return strings.Compare(a.Name, b.Name) })

	s, err := r.Load(ctx, PluginConfig{Name: name, Module: bin, Config: cfg})
	if err != nil {
		info.LoadError = err
		return info, nil
	}
	defer s.Close()
	if info.ABI == "native" {
		info.ABIVersion = NativeABIVersion // Load refuses any other
	}
	if d := s.desc; d != nil {
		info.Description = &Description{Name: d.Name, Version: d.Version, Hooks: d.Hooks, Methods: d.Methods, Config: d.Config}
	}
	info.InstanceMemory = s.InstanceMemory()
	return info, nil
}

func memorySig(d api.MemoryDefinition) string {
	if mx, ok := d.Max(); ok {
		return fmt.Sprintf("%d..%d pages", d.Min(), mx)
	}
	return fmt.Sprintf("%d.. pages", d.Min())
}
