;; good.wat: a well-behaved native-ABI plugin (sdk/ABI.md) for host tests.
;; Built with: wat2wasm good.wat -o good.wasm   (wabt 1.0.32)
;; It picks its answer from the first letter of the JSON-RPC method:
;;   c… continue (len 0)   r… replace (body + header edits)   j… reject 403
;;   p… respond            d… drop                            k… log + config + kv
(module
  (import "sluice" "log" (func $log (param i32 i32 i32)))
  (import "sluice" "config" (func $config (param i32 i32) (result i32)))
  (import "sluice" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_set" (func $kv_set (param i32 i32 i32 i32)))
  (import "sluice" "kv_delete" (func $kv_delete (param i32 i32)))
  (memory (export "memory") 2)

  (data (i32.const 100) "{\22name\22:\22good\22,\22version\22:\221.0.0\22,\22hooks\22:[\22request\22,\22response\22]}")
  (data (i32.const 200) "hello from wat")
  (data (i32.const 220) "hits")
  (data (i32.const 1024) "\01\01\00\00\00\00\00\00\02\00\00\00\01\08\00\00\00X-Plugin\03\00\00\00wat\03\08\00\00\00X-Remove\00\00\00\00\11\00\00\00{\22replaced\22:true}") ;; replace, 70 bytes
  (data (i32.const 1104) "\03\00\00\00\93\01\00\00\00\00\00\006\00\00\00{\22code\22:-32001,\22message\22:\22denied\22,\22data\22:{\22by\22:\22wat\22}}") ;; reject 403, 70 bytes
  (data (i32.const 1184) "\02\01\00\00\00\00\00\00\00\00\00\000\00\00\00{\22jsonrpc\22:\222.0\22,\22id\22:1,\22result\22:{\22from\22:\22wat\22}}") ;; respond, 64 bytes
  (data (i32.const 1248) "\04\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00") ;; drop, 16 bytes
  ;; 3000: a replace answer whose body (the plugin config) is filled at run time.
  (data (i32.const 3000) "\01\01\00\00\00\00\00\00\00\00\00\00")

  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_describe") (result i64) (call $ret (i32.const 100) (i32.const 64)))

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
    (local $c i32) (local $len i32) (local $v i32)
    (local.set $c (call $method0 (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 0x72)) (then (return (call $ret (i32.const 1024) (i32.const 70))))) ;; r
    (if (i32.eq (local.get $c) (i32.const 0x6a)) (then (return (call $ret (i32.const 1104) (i32.const 70))))) ;; j
    (if (i32.eq (local.get $c) (i32.const 0x70)) (then (return (call $ret (i32.const 1184) (i32.const 64))))) ;; p
    (if (i32.eq (local.get $c) (i32.const 0x64)) (then (return (call $ret (i32.const 1248) (i32.const 16))))) ;; d
    (if (i32.eq (local.get $c) (i32.const 0x6b)) ;; k
      (then
        (call $log (i32.const 1) (i32.const 200) (i32.const 14))
        ;; kv "hits": one byte counter
        (if (i32.eq (call $kv_get (i32.const 220) (i32.const 4) (i32.const 240) (i32.const 1)) (i32.const -1))
          (then (local.set $v (i32.const 1)))
          (else (local.set $v (i32.add (i32.load8_u (i32.const 240)) (i32.const 1)))))
        (i32.store8 (i32.const 240) (local.get $v))
        (call $kv_set (i32.const 220) (i32.const 4) (i32.const 240) (i32.const 1))
        (local.set $len (call $config (i32.const 3016) (i32.const 4096)))
        (i32.store (i32.const 3012) (local.get $len))
        (return (call $ret (i32.const 3000) (i32.add (i32.const 16) (local.get $len))))))
    (i64.const 0))

  (func (export "sluice_on_request") (param i32 i32) (result i64) (call $handle (local.get 0) (local.get 1)))
  (func (export "sluice_on_response") (param i32 i32) (result i64) (call $handle (local.get 0) (local.get 1)))
)
