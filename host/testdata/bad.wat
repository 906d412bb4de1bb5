;; bad.wat: a native-ABI plugin that misbehaves at run time, for host tests.
;; Built with: wat2wasm bad.wat -o bad.wasm   (wabt 1.0.32)
;; By the first letter of the JSON-RPC method:
;;   c… continue             u… trap (unreachable)        l… infinite loop
;;   m… grow memory until the limit, then trap            o… answer out of bounds
;;   x… unknown action       b… replace body not an object
;;   n… reject body not JSON t… truncated answer          d… drop (bad on a request)
(module
  (memory (export "memory") 2)

  (data (i32.const 1248) "\04\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00") ;; drop, 16 bytes
  (data (i32.const 1264) "\09\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00") ;; unknown action 9, 16 bytes
  (data (i32.const 1280) "\01\01\00\00\00\00\00\00\00\00\00\00\05\00\00\00[1,2]") ;; replace with [1,2], 21 bytes
  (data (i32.const 1312) "\03\00\00\00\00\00\00\00\00\00\00\00\04\00\00\00nope") ;; reject with "nope", 20 bytes
  (data (i32.const 1344) "\01\01\00\00\00\00\00\00\00\00\00\00\07\00\00\00{\22a\22") ;; body length 7, 4 bytes follow, 20 bytes

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; The envelope buffer lives at 64 KiB and grows with the message.
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $n) (i32.const 131071)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
        (then (return (i32.const 0))))))
    (i32.const 65536))

  (func $ret (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
  (func $skip (param $o i32) (result i32)
    (i32.add (i32.add (local.get $o) (i32.const 4)) (i32.load (local.get $o))))
  ;; first byte of the method (the fifth string), 0 when empty
  (func $method0 (param $p i32) (result i32)
    (local $o i32)
    (local.set $o (call $skip (call $skip (call $skip (call $skip (i32.add (local.get $p) (i32.const 12)))))))
    (if (result i32) (i32.eqz (i32.load (local.get $o)))
      (then (i32.const 0))
      (else (i32.load8_u (i32.add (local.get $o) (i32.const 4))))))

  (func $handle (param $p i32) (param $n i32) (result i64)
    (local $c i32)
    (local.set $c (call $method0 (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 0x75)) (then unreachable)) ;; u
    (if (i32.eq (local.get $c) (i32.const 0x6c)) (then (loop $forever (br $forever)))) ;; l
    (if (i32.eq (local.get $c) (i32.const 0x6d)) ;; m
      (then (loop $grow
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
        (br $grow))))
    (if (i32.eq (local.get $c) (i32.const 0x6f)) (then (return (call $ret (i32.const 0x7fff0000) (i32.const 64))))) ;; o
    (if (i32.eq (local.get $c) (i32.const 0x78)) (then (return (call $ret (i32.const 1264) (i32.const 16))))) ;; x
    (if (i32.eq (local.get $c) (i32.const 0x62)) (then (return (call $ret (i32.const 1280) (i32.const 21))))) ;; b
    (if (i32.eq (local.get $c) (i32.const 0x6e)) (then (return (call $ret (i32.const 1312) (i32.const 20))))) ;; n
    (if (i32.eq (local.get $c) (i32.const 0x74)) (then (return (call $ret (i32.const 1344) (i32.const 20))))) ;; t
    (if (i32.eq (local.get $c) (i32.const 0x64)) (then (return (call $ret (i32.const 1248) (i32.const 16))))) ;; d
    (i64.const 0))

  (func (export "sluice_on_request") (param i32 i32) (result i64) (call $handle (local.get 0) (local.get 1)))
)
