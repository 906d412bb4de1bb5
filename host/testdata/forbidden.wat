;; forbidden.wat: imports env.abort, outside the sluice and wasi_snapshot_preview1 namespaces; refused at load.
;; Built with: wat2wasm forbidden.wat -o forbidden.wasm   (wabt 1.0.32)
(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_on_request") (param i32 i32) (result i64) (i64.const 0))
)
