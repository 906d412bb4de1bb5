;; noabi.wat: exports nothing of either ABI; refused at load (missing export sluice_abi_version).
;; Built with: wat2wasm noabi.wat -o noabi.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32) (i32.const 0))
)
