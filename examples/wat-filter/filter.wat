;; filter.wat — the example security filter in WebAssembly text, on the native
;; ABI (sdk/ABI.md). Every example filter (examples/LANG-filter) does the same,
;; configured with:
;;
;;   block: [delete_file, drop_table]  # tools/call of these tools is rejected (-32001)
;;   tag: infra                        # every other request gets header X-Sluice-Tag: infra
;;   mask: "ACCT-####"                 # in responses, each match becomes ********* (# = a digit)
;;
;; Config strings with JSON escapes are refused (the call traps). Build (from
;; the repository root; `make examples` builds every example):
;;
;;   wat2wasm examples/wat-filter/filter.wat -o examples/wat-filter/wat-filter.wasm
;;
;; Memory: constants below 1024, the config at 1024 (8 KiB), the blocked-tool
;; table at 9216 (64 × ptr,len), the envelope at 65536 and the answer after it.
(module
  (import "sluice" "config" (func $config (param i32 i32) (result i32)))
  (memory (export "memory") 2)

  (data (i32.const 16) "tools/call")
  (data (i32.const 32) "X-Sluice-Tag")
  (data (i32.const 48) "block")
  (data (i32.const 56) "tag")
  (data (i32.const 64) "mask")
  (data (i32.const 128) "{\22code\22:-32001,\22message\22:\22tool blocked by policy\22}")
  (data (i32.const 256) "{\22name\22:\22wat-filter\22,\22version\22:\221.0.0\22,\22hooks\22:[\22request\22,\22response\22],\22config\22:[\22block\22,\22mask\22,\22tag\22]}")

  (global $loaded (mut i32) (i32.const 0))
  (global $pos (mut i32) (i32.const 0))    ;; config reader position
  (global $end (mut i32) (i32.const 0))    ;; config end
  (global $sp (mut i32) (i32.const 0))     ;; last string read: ptr
  (global $sl (mut i32) (i32.const 0))     ;;                   len
  (global $nblock (mut i32) (i32.const 0))
  (global $tag (mut i32) (i32.const 0))
  (global $tagn (mut i32) (i32.const 0))
  (global $mask (mut i32) (i32.const 0))
  (global $maskn (mut i32) (i32.const 0))
  (global $lit (mut i32) (i32.const 0))    ;; offset of the mask's first literal (non-#) byte; maskn if none
  (global $envn (mut i32) (i32.const 0))   ;; size of the last sluice_alloc

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  (func (export "sluice_describe") (result i64)
    (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const 102)))

  ;; grow_to makes memory at least end bytes long, or traps.
  (func $grow_to (param $end i32)
    (local $have i32)
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
              (i32.const -1))
          (then unreachable)))))

  (func (export "sluice_alloc") (param $n i32) (result i32)
    (global.set $envn (local.get $n))
    (call $grow_to (i32.add (i32.const 65536) (local.get $n)))
    (i32.const 65536))

  ;; eq compares two byte strings.
  (func $eq (param $a i32) (param $an i32) (param $b i32) (param $bn i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $an) (local.get $bn)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $an)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; --- the config reader ---
  (func $ws
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (global.get $pos) (global.get $end)))
        (br_if $done (i32.gt_u (i32.load8_u (global.get $pos)) (i32.const 32)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $next))))

  (func $eat (param $c i32) (result i32)
    (call $ws)
    (if (i32.and (i32.lt_u (global.get $pos) (global.get $end))
                 (i32.eq (i32.load8_u (global.get $pos)) (local.get $c)))
      (then
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (return (i32.const 1))))
    (i32.const 0))

  ;; string reads a JSON string without escapes into $sp/$sl, or traps.
  (func $string
    (local $c i32)
    (if (i32.eqz (call $eat (i32.const 34))) (then unreachable))
    (global.set $sp (global.get $pos))
    (block $done
      (loop $next
        (if (i32.ge_u (global.get $pos) (global.get $end)) (then unreachable))
        (local.set $c (i32.load8_u (global.get $pos)))
        (if (i32.eq (local.get $c) (i32.const 92)) (then unreachable)) ;; backslash
        (br_if $done (i32.eq (local.get $c) (i32.const 34)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $next)))
    (global.set $sl (i32.sub (global.get $pos) (global.get $sp)))
    (global.set $pos (i32.add (global.get $pos) (i32.const 1))))

  (func $load_config
    (local $n i32) (local $i i32) (local $c i32) (local $k i32) (local $kn i32)
    (local.set $n (call $config (i32.const 1024) (i32.const 8192)))
    (if (i32.gt_u (local.get $n) (i32.const 8192)) (then unreachable))
    (global.set $pos (i32.const 1024))
    (global.set $end (i32.add (i32.const 1024) (local.get $n)))
    (if (i32.eqz (call $eat (i32.const 123))) (then unreachable)) ;; {
    (if (i32.eqz (call $eat (i32.const 125)))                     ;; }
      (then
        (loop $member
          (call $string)
          (local.set $k (global.get $sp))
          (local.set $kn (global.get $sl))
          (if (i32.eqz (call $eat (i32.const 58))) (then unreachable)) ;; :
          (if (call $eq (local.get $k) (local.get $kn) (i32.const 48) (i32.const 5)) ;; block
            (then
              (if (i32.eqz (call $eat (i32.const 91))) (then unreachable)) ;; [
              (if (i32.eqz (call $eat (i32.const 93)))                     ;; ]
                (then
                  (loop $tool
                    (if (i32.ge_u (global.get $nblock) (i32.const 64)) (then unreachable))
                    (call $string)
                    (i32.store (i32.add (i32.const 9216) (i32.shl (global.get $nblock) (i32.const 3))) (global.get $sp))
                    (i32.store (i32.add (i32.const 9220) (i32.shl (global.get $nblock) (i32.const 3))) (global.get $sl))
                    (global.set $nblock (i32.add (global.get $nblock) (i32.const 1)))
                    (br_if $tool (call $eat (i32.const 44))))
                  (if (i32.eqz (call $eat (i32.const 93))) (then unreachable)))))
            (else
              (call $string)
              (if (call $eq (local.get $k) (local.get $kn) (i32.const 56) (i32.const 3)) ;; tag
                (then (global.set $tag (global.get $sp)) (global.set $tagn (global.get $sl)))
                (else
                  (if (call $eq (local.get $k) (local.get $kn) (i32.const 64) (i32.const 4)) ;; mask
                    (then (global.set $mask (global.get $sp)) (global.set $maskn (global.get $sl)))
                    (else unreachable))))))
          (br_if $member (call $eat (i32.const 44))))
        (if (i32.eqz (call $eat (i32.const 125))) (then unreachable))))
    ;; mask may not hold quotes or control characters (it would break JSON)
    (block $ok
      (loop $next
        (br_if $ok (i32.ge_u (local.get $i) (global.get $maskn)))
        (local.set $c (i32.load8_u (i32.add (global.get $mask) (local.get $i))))
        (if (i32.or (i32.eq (local.get $c) (i32.const 34)) (i32.lt_u (local.get $c) (i32.const 32)))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (block $found
      (loop $next
        (br_if $found (i32.ge_u (global.get $lit) (global.get $maskn)))
        (br_if $found (i32.ne (i32.load8_u (i32.add (global.get $mask) (global.get $lit))) (i32.const 35)))
        (global.set $lit (i32.add (global.get $lit) (i32.const 1)))
        (br $next)))
    (global.set $loaded (i32.const 1)))

  ;; answer returns where the answer goes: after the envelope, 8-aligned,
  ;; with n bytes of room.
  (func $answer (param $n i32) (result i32)
    (local $a i32)
    (local.set $a (i32.and (i32.add (i32.add (i32.const 65536) (global.get $envn)) (i32.const 7)) (i32.const -8)))
    (call $grow_to (i32.add (local.get $a) (local.get $n)))
    (local.get $a))

  (func $result (param $ptr i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $n))))

  (func (export "sluice_on_request") (param $p i32) (param $len i32) (result i64)
    (local $o i32) (local $i i32) (local $l i32)
    (local $method i32) (local $methodn i32) (local $tool i32) (local $tooln i32) (local $a i32)
    (if (i32.eqz (global.get $loaded)) (then (call $load_config)))
    ;; seven strings from offset 12: method is the 5th, tool the 6th
    (local.set $o (i32.add (local.get $p) (i32.const 12)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 6)))
        (local.set $l (i32.load (local.get $o)))
        (if (i32.eq (local.get $i) (i32.const 4))
          (then (local.set $method (i32.add (local.get $o) (i32.const 4))) (local.set $methodn (local.get $l))))
        (if (i32.eq (local.get $i) (i32.const 5))
          (then (local.set $tool (i32.add (local.get $o) (i32.const 4))) (local.set $tooln (local.get $l))))
        (local.set $o (i32.add (local.get $o) (i32.add (i32.const 4) (local.get $l))))
        (if (i32.gt_u (local.get $o) (i32.add (local.get $p) (local.get $len))) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (call $eq (local.get $method) (local.get $methodn) (i32.const 16) (i32.const 10)) ;; tools/call
      (then
        (local.set $i (i32.const 0))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (global.get $nblock)))
            (if (call $eq (local.get $tool) (local.get $tooln)
                          (i32.load (i32.add (i32.const 9216) (i32.shl (local.get $i) (i32.const 3))))
                          (i32.load (i32.add (i32.const 9220) (i32.shl (local.get $i) (i32.const 3)))))
              (then
                ;; reject: action 3, no flags, status 0, no edits, the error object
                (local.set $a (call $answer (i32.const 66)))
                (i64.store (local.get $a) (i64.const 3))
                (i32.store offset=8 (local.get $a) (i32.const 0))
                (i32.store offset=12 (local.get $a) (i32.const 50))
                (memory.copy (i32.add (local.get $a) (i32.const 16)) (i32.const 128) (i32.const 50))
                (return (call $result (local.get $a) (i32.const 66)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))))
    (if (i32.eqz (global.get $tagn)) (then (return (i64.const 0)))) ;; continue
    ;; replace with one header edit: set X-Sluice-Tag: tag
    (local.set $a (call $answer (i32.add (i32.const 41) (global.get $tagn))))
    (i64.store (local.get $a) (i64.const 1))
    (i32.store offset=8 (local.get $a) (i32.const 1))
    (i32.store8 offset=12 (local.get $a) (i32.const 1))
    (i32.store offset=13 (local.get $a) (i32.const 12))
    (memory.copy (i32.add (local.get $a) (i32.const 17)) (i32.const 32) (i32.const 12))
    (i32.store offset=29 (local.get $a) (global.get $tagn))
    (memory.copy (i32.add (local.get $a) (i32.const 33)) (global.get $tag) (global.get $tagn))
    (i32.store (i32.add (local.get $a) (i32.add (i32.const 33) (global.get $tagn))) (i32.const 0))
    (call $result (local.get $a) (i32.add (i32.const 37) (global.get $tagn))))

  ;; match_at: '#' matches one ASCII digit, any other byte itself; a match
  ;; right after a backslash (inside a JSON escape) does not count.
  (func $match_at (param $b i32) (param $i i32) (result i32)
    (local $j i32) (local $c i32) (local $m i32)
    (if (i32.gt_u (local.get $i) (i32.const 0))
      (then
        (if (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $b) (local.get $i)) (i32.const 1))) (i32.const 92))
          (then (return (i32.const 0))))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $j) (global.get $maskn)))
        (local.set $c (i32.load8_u (i32.add (i32.add (local.get $b) (local.get $i)) (local.get $j))))
        (local.set $m (i32.load8_u (i32.add (global.get $mask) (local.get $j))))
        (if (i32.eq (local.get $m) (i32.const 35)) ;; #
          (then
            (if (i32.gt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 9)) (then (return (i32.const 0)))))
          (else
            (if (i32.ne (local.get $c) (local.get $m)) (then (return (i32.const 0))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; next_match returns where the first match at or after $from starts in
  ;; the body ($b, $n), or $n. Candidates are found by the mask's first
  ;; literal byte.
  (func $next_match (param $b i32) (param $n i32) (param $from i32) (result i32)
    (local $i i32) (local $c i32)
    (if (i32.lt_u (local.get $n) (global.get $maskn)) (then (return (local.get $n))))
    (if (i32.lt_u (global.get $lit) (global.get $maskn))
      (then
        (local.set $c (i32.load8_u (i32.add (global.get $mask) (global.get $lit))))
        (local.set $i (i32.add (local.get $from) (global.get $lit)))
        (block $done
          (loop $next
            ;; i + maskn - lit <= n
            (br_if $done (i32.gt_u (i32.sub (i32.add (local.get $i) (global.get $maskn)) (global.get $lit)) (local.get $n)))
            (if (i32.eq (i32.load8_u (i32.add (local.get $b) (local.get $i))) (local.get $c))
              (then
                (if (call $match_at (local.get $b) (i32.sub (local.get $i) (global.get $lit)))
                  (then (return (i32.sub (local.get $i) (global.get $lit)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (return (local.get $n))))
    (local.set $i (local.get $from))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (local.get $i) (global.get $maskn)) (local.get $n)))
        (if (call $match_at (local.get $b) (local.get $i)) (then (return (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "sluice_on_response") (param $p i32) (param $len i32) (result i64)
    (local $o i32) (local $i i32) (local $h i32) (local $b i32) (local $bn i32) (local $a i32) (local $out i32)
    (if (i32.eqz (global.get $loaded)) (then (call $load_config)))
    (if (i32.eqz (global.get $maskn)) (then (return (i64.const 0))))
    ;; skip the seven strings, then the headers, to the body
    (local.set $o (i32.add (local.get $p) (i32.const 12)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 7)))
        (local.set $o (i32.add (local.get $o) (i32.add (i32.const 4) (i32.load (local.get $o)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $h (i32.shl (i32.load (local.get $o)) (i32.const 1)))
    (local.set $o (i32.add (local.get $o) (i32.const 4)))
    (local.set $i (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $h)))
        (local.set $o (i32.add (local.get $o) (i32.add (i32.const 4) (i32.load (local.get $o)))))
        (if (i32.gt_u (local.get $o) (i32.add (local.get $p) (local.get $len))) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $bn (i32.load (local.get $o)))
    (local.set $b (i32.add (local.get $o) (i32.const 4)))
    (if (i32.gt_u (i32.add (local.get $b) (local.get $bn)) (i32.add (local.get $p) (local.get $len))) (then unreachable))
    (local.set $i (call $next_match (local.get $b) (local.get $bn) (i32.const 0)))
    (if (i32.eq (local.get $i) (local.get $bn)) (then (return (i64.const 0)))) ;; no match: continue
    ;; replace: action 1, flag body, status 0, no edits, the body with matches masked
    (local.set $a (call $answer (i32.add (i32.const 16) (local.get $bn))))
    (i64.store (local.get $a) (i64.const 0x101))
    (i32.store offset=8 (local.get $a) (i32.const 0))
    (i32.store offset=12 (local.get $a) (local.get $bn))
    (local.set $out (i32.add (local.get $a) (i32.const 16)))
    (memory.copy (local.get $out) (local.get $b) (local.get $bn))
    (block $done
      (loop $next
        (br_if $done (i32.eq (local.get $i) (local.get $bn)))
        (memory.fill (i32.add (local.get $out) (local.get $i)) (i32.const 42) (global.get $maskn))
        (local.set $i (call $next_match (local.get $b) (local.get $bn) (i32.add (local.get $i) (global.get $maskn))))
        (br $next)))
    (call $result (local.get $a) (i32.add (i32.const 16) (local.get $bn))))
)
