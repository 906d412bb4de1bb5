;; configkeys.wat: describes the config keys it accepts ("block", "tag"); a
;; stage configured with any other key is refused at load.
;; Built with: wat2wasm configkeys.wat -o configkeys.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 1)
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (data (i32.const 100) "{\22hooks\22:[\22request\22],\22config\22:[\22tag\22,\22block\22]}")
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_describe") (result i64) (i64.or (i64.shl (i64.const 100) (i64.const 32)) (i64.const 46)))
  (func (export "sluice_on_request") (param i32 i32) (result i64) (i64.const 0))
)
