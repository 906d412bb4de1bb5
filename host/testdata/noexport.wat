;; noexport.wat: a native-ABI module without sluice_on_request (nor any handler); refused at load.
;; Built with: wat2wasm noexport.wat -o noexport.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
)
