;; busy.wat: proves an instance runs one call at a time. Each handler sets a
;; busy flag, spins a little to widen the window, and clears it; it traps
;; (unreachable) if it finds the flag already set, i.e. if two goroutines
;; entered the same instance at once.
;; Built with: wat2wasm busy.wat -o busy.wasm   (wabt 1.0.32)
(module
  (memory (export "memory") 2)
  (global $busy (mut i32) (i32.const 0))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $n) (i32.const 131071)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
        (then (return (i32.const 0))))))
    (i32.const 65536))
  (func $guarded (result i64)
    (local $i i32)
    (if (global.get $busy) (then unreachable))
    (global.set $busy (i32.const 1))
    (block $done
      (loop $spin
        (br_if $done (i32.ge_u (local.get $i) (i32.const 2000)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $spin)))
    (if (i32.eqz (global.get $busy)) (then unreachable))
    (global.set $busy (i32.const 0))
    (i64.const 0))
  (func (export "sluice_on_request") (param $p i32) (param $len i32) (result i64)
    (call $guarded))
  (func (export "sluice_on_response") (param $p i32) (param $len i32) (result i64)
    (call $guarded))
)
