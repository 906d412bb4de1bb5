;; grow.wat: a hostile native-ABI plugin for host and fault-suite tests: it
;; grows its memory without bound and writes to every page it gets, so the
;; memory is really used, not just reserved.
;; Built with: wat2wasm grow.wat -o grow.wasm   (wabt 1.0.32)
;; By the first letter of the JSON-RPC method:
;;   p… (ping) continue, growing nothing
;;   s… (step) grow by 1 MiB and continue; trap when memory cannot grow
;;   anything else: grow 1 MiB at a time until memory cannot grow, then trap
(module
  (memory (export "memory") 2)

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; The envelope buffer lives at 64 KiB: envelopes above 60 KiB get 0 (oom).
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 65536))))

  (func $skip (param $o i32) (result i32)
    (i32.add (i32.add (local.get $o) (i32.const 4)) (i32.load (local.get $o))))
  (func $method0 (param $p i32) (result i32)
    (local $o i32)
    (local.set $o (call $skip (call $skip (call $skip (call $skip (i32.add (local.get $p) (i32.const 12)))))))
    (if (result i32) (i32.eqz (i32.load (local.get $o)))
      (then (i32.const 0))
      (else (i32.load8_u (i32.add (local.get $o) (i32.const 4))))))

  ;; grow1 grows memory by 16 pages and writes one byte into each 4 KiB of
  ;; them; it traps (unreachable) when memory.grow fails.
  (func $grow1
    (local $at i32) (local $end i32)
    (local.set $at (memory.grow (i32.const 16)))
    (if (i32.eq (local.get $at) (i32.const -1)) (then unreachable))
    (local.set $at (i32.shl (local.get $at) (i32.const 16)))
    (local.set $end (i32.add (local.get $at) (i32.const 1048576)))
    (loop $touch
      (i32.store8 (local.get $at) (i32.const 1))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $touch (i32.lt_u (local.get $at) (local.get $end)))))

  (func (export "sluice_on_request") (param $p i32) (param $n i32) (result i64)
    (local $c i32)
    (local.set $c (call $method0 (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 0x70)) (then (return (i64.const 0)))) ;; p
    (if (i32.eq (local.get $c) (i32.const 0x73)) (then (call $grow1) (return (i64.const 0)))) ;; s
    (loop $more (call $grow1) (br $more))
    (i64.const 0))
)
