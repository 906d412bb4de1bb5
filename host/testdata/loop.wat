;; loop.wat: a hostile native-ABI plugin for host and fault-suite tests: it
;; loops forever on every request (only the call timeout stops it), except
;; on ping, which it lets through. Its memory stays at 2 pages.
;; Built with: wat2wasm loop.wat -o loop.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 2 2)

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; The envelope buffer lives at 4 KiB: envelopes above 60 KiB get 0 (oom).
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func $skip (param $o i32) (result i32)
    (i32.add (i32.add (local.get $o) (i32.const 4)) (i32.load (local.get $o))))
  ;; first byte of the method (the fifth string), 0 when empty
  (func $method0 (param $p i32) (result i32)
    (local $o i32)
    (local.set $o (call $skip (call $skip (call $skip (call $skip (i32.add (local.get $p) (i32.const 12)))))))
    (if (result i32) (i32.eqz (i32.load (local.get $o)))
      (then (i32.const 0))
      (else (i32.load8_u (i32.add (local.get $o) (i32.const 4))))))

  (func (export "sluice_on_request") (param $p i32) (param $n i32) (result i64)
    (if (i32.ne (call $method0 (local.get $p)) (i32.const 0x70)) ;; not p(ing)
      (then (loop $forever (br $forever))))
    (i64.const 0))
)
