// The example security filter in AssemblyScript, on the Extism ABI through
// Extism's AssemblyScript PDK (@extism/as-pdk). Every example filter
// (examples/LANG-filter) does the same, configured with:
//
//   block: [delete_file, drop_table]  # tools/call of these tools is rejected (-32001)
//   tag: infra                        # every other request gets header X-Sluice-Tag: infra
//   mask: "ACCT-####"                 # in responses, each match becomes ********* (# = a digit)
//
// Build (from this directory; `make examples` builds every example):
//
//   npm ci && npm run build
//
// which runs asc filter.ts --use abort=filter/abort -O3 --noAssert -o assemblyscript-filter.wasm
import { Config, Host, LogLevel } from "@extism/as-pdk";

const DESCRIBE = `{"name":"assemblyscript-filter","version":"1.0.0","hooks":["request","response"],"config":["block","mask","tag"]}`;
const REJECT = `{"action":"reject","error":{"code":-32001,"message":"tool blocked by policy"}}`;

// The parsed config, read once per instance.
let loaded = false;
let block: string[] = [];
let tag = "";
let mask: Uint8Array = new Uint8Array(0);
let lit = 0; // offset of the mask's first literal (non-#) byte; mask.length if none

function fail(why: string): void {
  Host.log(LogLevel.Error, "assemblyscript-filter: config: " + why);
  unreachable(); // a plugin failure: the stage's on-error decides
}

function loadConfig(): void {
  const b = Config.get("block");
  if (b !== null) {
    const r = new Reader(Uint8Array.wrap(String.UTF8.encode(b)));
    if (!r.eat(0x5b)) fail("block must be a list of tool names");
    if (!r.eat(0x5d)) {
      do {
        block.push(r.string());
      } while (r.eat(0x2c));
      if (!r.eat(0x5d)) fail("']' expected");
    }
  }
  const t = Config.get("tag");
  if (t !== null) {
    if (t.includes("\r") || t.includes("\n")) fail("tag may not hold line breaks");
    tag = t;
  }
  const m = Config.get("mask");
  if (m !== null) {
    mask = Uint8Array.wrap(String.UTF8.encode(m));
    for (let i = 0; i < mask.length; i++) {
      const c = mask[i];
      if (c == 0x22 || c == 0x5c || c < 0x20) fail("mask may not hold quotes, backslashes or control characters");
    }
    while (lit < mask.length && mask[lit] == 0x23) lit++;
  }
  loaded = true;
}

// Reader is a small JSON reader over bytes.
class Reader {
  i: i32 = 0;
  constructor(public b: Uint8Array) {}

  ws(): void {
    while (this.i < this.b.length) {
      const c = this.b[this.i];
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.i++;
    }
  }

  eat(c: u8): bool {
    this.ws();
    if (this.i < this.b.length && this.b[this.i] == c) {
      this.i++;
      return true;
    }
    return false;
  }

  // string decodes a JSON string.
  string(): string {
    if (!this.eat(0x22)) fail("string expected");
    const start = this.i;
    let escaped = false;
    while (this.i < this.b.length && this.b[this.i] != 0x22) {
      if (this.b[this.i] == 0x5c) {
        escaped = true;
        this.i++;
      }
      this.i++;
    }
    if (this.i >= this.b.length) fail("unterminated string");
    const raw = this.b.subarray(start, this.i);
    this.i++;
    if (!escaped) return String.UTF8.decode(raw.slice().buffer);
    // Decode escapes through the quoted form: JSON escapes are a subset
    // of what this handles.
    let s = "";
    for (let j = 0; j < raw.length; j++) {
      let c = raw[j];
      if (c != 0x5c) {
        let k = j;
        while (k < raw.length && raw[k] != 0x5c) k++;
        s += String.UTF8.decode(raw.slice(j, k).buffer);
        j = k - 1;
        continue;
      }
      c = raw[++j];
      if (c == 0x6e) s += "\n";
      else if (c == 0x72) s += "\r";
      else if (c == 0x74) s += "\t";
      else if (c == 0x62) s += "\b";
      else if (c == 0x66) s += "\f";
      else if (c == 0x75) {
        s += String.fromCharCode(<i32>parseInt(String.UTF8.decode(raw.slice(j + 1, j + 5).buffer), 16));
        j += 4;
      } else s += String.fromCharCode(c);
    }
    return s;
  }

  // skipString moves past a JSON string without decoding it.
  skipString(): void {
    if (!this.eat(0x22)) fail("string expected");
    const b = this.b;
    let i = this.i;
    while (i < b.length && b[i] != 0x22) i += b[i] == 0x5c ? 2 : 1;
    if (i >= b.length) fail("unterminated string");
    this.i = i + 1;
  }

  // skip moves past one JSON value.
  skip(): void {
    this.ws();
    if (this.i >= this.b.length) fail("value expected");
    const c = this.b[this.i];
    if (c == 0x22) {
      this.skipString();
      return;
    }
    if (c == 0x7b || c == 0x5b) {
      let depth = 0;
      while (this.i < this.b.length) {
        const d = this.b[this.i];
        if (d == 0x22) {
          this.skipString();
          continue;
        }
        if (d == 0x7b || d == 0x5b) depth++;
        else if (d == 0x7d || d == 0x5d) {
          depth--;
          if (depth == 0) {
            this.i++;
            return;
          }
        }
        this.i++;
      }
      return;
    }
    while (this.i < this.b.length) {
      const d = this.b[this.i];
      if (d == 0x2c || d == 0x7d || d == 0x5d || d == 0x20) break;
      this.i++;
    }
  }
}

// The envelope members the filter needs.
class Envelope {
  method: string = "";
  tool: string = "";
  msgStart: i32 = 0;
  msgEnd: i32 = 0;
}

// spanIs reports whether b[s:e] holds the ASCII string lit.
function spanIs(b: Uint8Array, s: i32, e: i32, lit: string): bool {
  if (e - s != lit.length) return false;
  for (let i = 0; i < lit.length; i++) if (<i32>b[s + i] != lit.charCodeAt(i)) return false;
  return true;
}

function parseEnvelope(b: Uint8Array): Envelope {
  const e = new Envelope();
  const r = new Reader(b);
  if (!r.eat(0x7b)) unreachable();
  do {
    r.ws();
    const ks = r.i + 1;
    r.skipString();
    const ke = r.i - 1;
    if (!r.eat(0x3a)) unreachable();
    if (spanIs(b, ks, ke, "method")) e.method = r.string();
    else if (spanIs(b, ks, ke, "tool")) e.tool = r.string();
    else if (spanIs(b, ks, ke, "message")) {
      r.ws();
      e.msgStart = r.i;
      r.skip();
      e.msgEnd = r.i;
    } else r.skip();
  } while (r.eat(0x2c));
  return e;
}

function output(s: string): void {
  Host.output(Uint8Array.wrap(String.UTF8.encode(s)));
}

// jsonString quotes s for JSON.
function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

export function describe(): i32 {
  output(DESCRIBE);
  return 0;
}

export function on_request(): i32 {
  if (!loaded) loadConfig();
  const e = parseEnvelope(Host.input());
  if (e.method == "tools/call" && block.includes(e.tool)) {
    output(REJECT);
    return 0;
  }
  if (tag.length == 0) return 0; // no output: continue unchanged
  output(`{"action":"replace","headers":[{"op":"set","name":"X-Sluice-Tag","value":` + jsonString(tag) + `}]}`);
  return 0;
}

// matchAt: '#' matches one ASCII digit, any other byte itself; a match
// right after a backslash (inside a JSON escape) does not count.
function matchAt(b: Uint8Array, i: i32): bool {
  if (i > 0 && b[i - 1] == 0x5c) return false;
  for (let j = 0; j < mask.length; j++) {
    const c = b[i + j];
    const m = mask[j];
    if (m == 0x23) {
      if (c < 0x30 || c > 0x39) return false;
    } else if (c != m) return false;
  }
  return true;
}

// nextMatch returns where the first match at or after from starts in b, or
// b.length; candidates are found by the mask's first literal byte.
function nextMatch(b: Uint8Array, from: i32): i32 {
  const n = b.length;
  const m = mask.length;
  if (n < m) return n;
  if (lit < m) {
    const c = mask[lit];
    for (let i = from + lit; i + m - lit <= n; i++) {
      if (b[i] == c && matchAt(b, i - lit)) return i - lit;
    }
    return n;
  }
  for (let s = from; s + m <= n; s++) if (matchAt(b, s)) return s;
  return n;
}

const PREFIX = Uint8Array.wrap(String.UTF8.encode(`{"action":"replace","message":`));

export function on_response(): i32 {
  if (!loaded) loadConfig();
  if (mask.length == 0) return 0;
  const input = Host.input();
  const e = parseEnvelope(input);
  if (input[e.msgStart] != 0x7b) return 0; // not a JSON object: leave it
  const msg = input.subarray(e.msgStart, e.msgEnd);
  let s = nextMatch(msg, 0);
  if (s == msg.length) return 0; // no match: continue
  const out = new Uint8Array(PREFIX.length + msg.length + 1);
  out.set(PREFIX, 0);
  out.set(msg, PREFIX.length);
  out[out.length - 1] = 0x7d;
  for (; s < msg.length; s = nextMatch(msg, s + mask.length)) {
    out.fill(0x2a, PREFIX.length + s, PREFIX.length + s + mask.length);
  }
  Host.output(out);
  return 0;
}

export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}
