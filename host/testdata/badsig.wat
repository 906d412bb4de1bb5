;; badsig.wat: exports sluice_on_request with a wrong signature (i32) -> i32; refused at load.
;; Built with: wat2wasm badsig.wat -o badsig.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_on_request") (param i32) (result i32) (i32.const 0))
)
