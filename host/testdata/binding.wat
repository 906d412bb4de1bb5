;; binding.wat: a binding plugin (sdk/ABI.md, "Binding plugins") that
;; misbehaves on request, for the host's failure tests.
;; Built with: wat2wasm binding.wat -o binding.wasm   (wabt 1.0.32)
;; It picks its reply from the first letter of the JSON-RPC method (every
;; request of the tests has id 1):
;;   o… ok: respond {"ok":true} with header X-Wat: 1
;;   e… emit two progress notifications, then ok
;;   r… reject -32601, HTTP 404          t… trap (unreachable)
;;   l… loop forever                     g… garbage (unknown action)
;;   n… no answer (len 0)                d… emit a response (a second answer), then ok
;;   w… respond with id 2                j… respond with a body that is not JSON
;;   h… http_request to a host off the allow-list; {"denied":true} when refused
;;   p… process "nope" (not configured); {"denied":true} when refused
;; Notifications and session ends get the empty reply (accepted).
(module
  (import "sluice" "emit" (func $emit (param i32 i32) (result i32)))
  (import "sluice" "http_request" (func $http (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "process" (func $process (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "sluice" "result" (func $result (param i32 i32) (result i32)))
  (memory (export "memory") 2)

  (data (i32.const 1024) "{\22name\22:\22watbinding\22,\22version\22:\221.0.0\22,\22kind\22:\22binding\22}") ;; describe, 56 bytes
  (data (i32.const 1104) "\02\01\00\00\00\00\00\00\01\00\00\00\01\05\00\00\00X-Wat\01\00\00\001-\00\00\00{\22jsonrpc\22:\222.0\22,\22id\22:1,\22result\22:{\22ok\22:true}}") ;; ok, 76 bytes
  (data (i32.const 1200) "\03\00\00\00\94\01\00\00\00\00\00\00*\00\00\00{\22code\22:-32601,\22message\22:\22no such method\22}") ;; reject, 58 bytes
  (data (i32.const 1280) "\09\00\00\00\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff") ;; garbage, 20 bytes
  (data (i32.const 1328) "\02\01\00\00\00\00\00\00\00\00\00\00$\00\00\00{\22jsonrpc\22:\222.0\22,\22id\22:2,\22result\22:{}}") ;; wrongid, 52 bytes
  (data (i32.const 1408) "\02\01\00\00\00\00\00\00\00\00\00\00\0f\00\00\00not json at all") ;; notjson, 31 bytes
  (data (i32.const 1456) "{\22jsonrpc\22:\222.0\22,\22method\22:\22notifications/progress\22,\22params\22:{\22progressToken\22:\22t\22,\22progress\22:1}}") ;; note, 95 bytes
  (data (i32.const 1568) "{\22jsonrpc\22:\222.0\22,\22id\22:1,\22result\22:{}}") ;; response, 36 bytes
  (data (i32.const 1632) "\02\01\00\00\00\00\00\00\00\00\00\001\00\00\00{\22jsonrpc\22:\222.0\22,\22id\22:1,\22result\22:{\22denied\22:true}}") ;; denied, 65 bytes
  (data (i32.const 1728) "\02\01\00\00\00\00\00\00\00\00\00\002\00\00\00{\22jsonrpc\22:\222.0\22,\22id\22:1,\22result\22:{\22denied\22:false}}") ;; allowed, 66 bytes
  (data (i32.const 1824) "\03\00\00\00GET\1a\00\00\00http://forbidden.invalid/x\00\00\00\00\00\00\00\00") ;; httpreq, 45 bytes
  (data (i32.const 1888) "nope") ;; procname, 4 bytes

  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_describe") (result i64) (call $ret (i32.const 1024) (i32.const 56)))

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
  (func $ok (result i64) (call $ret (i32.const 1104) (i32.const 76)))
  (func $denied (param $r i32) (result i64)
    (if (result i64) (i32.eq (local.get $r) (i32.const -1))
      (then (call $ret (i32.const 1632) (i32.const 65)))
      (else (call $ret (i32.const 1728) (i32.const 66)))))

  (func (export "sluice_on_call") (param $p i32) (param $n i32) (result i64)
    (local $c i32)
    ;; hook 4; flags: notification (1) or session end (4): accepted
    (if (i32.ne (i32.load8_u (i32.add (local.get $p) (i32.const 4))) (i32.const 4)) (then (unreachable)))
    (if (i32.and (i32.load8_u (i32.add (local.get $p) (i32.const 5))) (i32.const 5))
      (then (return (i64.const 0))))
    (local.set $c (call $method0 (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 0x6f)) (then (return (call $ok)))) ;; o
    (if (i32.eq (local.get $c) (i32.const 0x65)) ;; e
      (then
        (drop (call $emit (i32.const 1456) (i32.const 95)))
        (drop (call $emit (i32.const 1456) (i32.const 95)))
        (return (call $ok))))
    (if (i32.eq (local.get $c) (i32.const 0x72)) (then (return (call $ret (i32.const 1200) (i32.const 58))))) ;; r
    (if (i32.eq (local.get $c) (i32.const 0x74)) (then (unreachable))) ;; t
    (if (i32.eq (local.get $c) (i32.const 0x6c)) (then (loop $forever (br $forever)))) ;; l
    (if (i32.eq (local.get $c) (i32.const 0x67)) (then (return (call $ret (i32.const 1280) (i32.const 20))))) ;; g
    (if (i32.eq (local.get $c) (i32.const 0x6e)) (then (return (i64.const 0)))) ;; n
    (if (i32.eq (local.get $c) (i32.const 0x64)) ;; d
      (then
        (drop (call $emit (i32.const 1568) (i32.const 36)))
        (return (call $ok))))
    (if (i32.eq (local.get $c) (i32.const 0x77)) (then (return (call $ret (i32.const 1328) (i32.const 52))))) ;; w
    (if (i32.eq (local.get $c) (i32.const 0x6a)) (then (return (call $ret (i32.const 1408) (i32.const 31))))) ;; j
    (if (i32.eq (local.get $c) (i32.const 0x68)) ;; h
      (then (return (call $denied (call $http (i32.const 1824) (i32.const 45) (i32.const 4096) (i32.const 1024))))))
    (if (i32.eq (local.get $c) (i32.const 0x70)) ;; p
      (then (return (call $denied (call $process (i32.const 1888) (i32.const 4) (i32.const 1888) (i32.const 4) (i32.const 4096) (i32.const 1024))))))
    (call $ok))
)
