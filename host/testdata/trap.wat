;; trap.wat: a native-ABI plugin (sdk/ABI.md) that traps on every request,
;; for the fault suite's log-flood scenario (engine/faults).
;; Built with: wat2wasm trap.wat -o trap.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 2)

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; The envelope buffer lives at 64 KiB and grows with the message.
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $n) (i32.const 131071)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
        (then (return (i32.const 0))))))
    (i32.const 65536))

  (func (export "sluice_on_request") (param i32 i32) (result i64) unreachable)
)
