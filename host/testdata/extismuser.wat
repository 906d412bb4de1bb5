;; extismuser.wat: an Extism-ABI module importing a user host function the host
;; does not provide; refused at load.
;; Built with: wat2wasm extismuser.wat -o extismuser.wasm   (wabt 1.0.32)
(module
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/user" "fetch_secret" (func $fetch (param i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "on_request") (result i32) (i32.const 0))
)
