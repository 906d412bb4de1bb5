;; extismabort.wat: an Extism-ABI module importing env.abort, as AssemblyScript
;; does unless built with --use abort=...; refused at load with a hint.
;; Built with: wat2wasm extismabort.wat -o extismabort.wasm   (wabt 1.0.32)
(module
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "on_request") (result i32) (i32.const 0))
)
