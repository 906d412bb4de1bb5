;; extismsig.wat: an Extism-ABI module importing a kernel function with the
;; wrong signature; refused at load.
;; Built with: wat2wasm extismsig.wat -o extismsig.wasm   (wabt 1.0.32)
(module
  (import "extism:host/env" "input_length" (func $input_length (result i32)))
  (memory (export "memory") 1)
  (func (export "on_request") (result i32) (i32.const 0))
)
