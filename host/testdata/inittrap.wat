;; inittrap.wat: a reactor whose _initialize traps; refused at load (instantiate fails).
;; Built with: wat2wasm inittrap.wat -o inittrap.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize") unreachable)
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_on_request") (param i32 i32) (result i64) (i64.const 0))
)
