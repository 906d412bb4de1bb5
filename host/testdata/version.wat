;; version.wat: sluice_abi_version returns 2; refused at load (unsupported ABI version 2).
;; Built with: wat2wasm version.wat -o version.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_abi_version") (result i32) (i32.const 2))
  (func (export "sluice_on_request") (param i32 i32) (result i64) (i64.const 0))
)
