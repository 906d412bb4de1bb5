//! The example security filter in Rust, on the native ABI through the
//! hand-written binding module `sdk/sluice.rs` (no crates). Every example filter
//! (examples/LANG-filter) does the same, configured with:
//!
//! ```yaml
//! block: [delete_file, drop_table]  # tools/call of these tools is rejected (-32001)
//! tag: infra                        # every other request gets header X-Sluice-Tag: infra
//! mask: "ACCT-####"                 # in responses, each match becomes ********* (# = a digit)
//! ```
//!
//! Build (from this directory; `make examples` builds every example):
//!
//! ```sh
//! rustc --target wasm32-unknown-unknown --crate-type cdylib -O -C strip=symbols lib.rs -o rust-filter.wasm
//! ```
//!
//! Test natively: `rustc --test lib.rs -o filter-test && ./filter-test`.

#[path = "../../sdk/sluice.rs"]
mod sluice;

use sluice::{Answer, Envelope, Level};
use std::cell::RefCell;

const DESCRIBE: &str = r#"{"name":"rust-filter","version":"1.0.0","hooks":["request","response"],"config":["block","mask","tag"]}"#;

/// The filter's configuration.
#[derive(Default)]
struct Config {
    block: Vec<Vec<u8>>,
    tag: Vec<u8>,
    mask: Vec<u8>,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = RefCell::new(None);
}

/// A small reader for the config object: string keys with string or
/// array-of-string values.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Result<Vec<u8>, String> {
        if !self.eat(b'"') {
            return Err("string expected".into());
        }
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.b.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            let s = std::str::from_utf8(hex).map_err(|_| "bad \\u escape")?;
                            let cp = u32::from_str_radix(s, 16).map_err(|_| "bad \\u escape")?;
                            self.i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err("bad escape".into()),
                    }
                }
                _ => out.push(c),
            }
        }
    }
}

fn parse_config(b: &[u8]) -> Result<Config, String> {
    let mut r = Reader { b, i: 0 };
    let mut c = Config::default();
    if !r.eat(b'{') {
        return Err("object expected".into());
    }
    if !r.eat(b'}') {
        loop {
            let key = r.string()?;
            if !r.eat(b':') {
                return Err("':' expected".into());
            }
            match key.as_slice() {
                b"block" => {
                    if !r.eat(b'[') {
                        return Err("block must be a list of tool names".into());
                    }
                    if !r.eat(b']') {
                        loop {
                            c.block.push(r.string()?);
                            if !r.eat(b',') {
                                break;
                            }
                        }
                        if !r.eat(b']') {
                            return Err("']' expected".into());
                        }
                    }
                }
                b"tag" => c.tag = r.string()?,
                b"mask" => c.mask = r.string()?,
                _ => return Err(format!("unknown key {}", String::from_utf8_lossy(&key))),
            }
            if !r.eat(b',') {
                break;
            }
        }
        if !r.eat(b'}') {
            return Err("'}' expected".into());
        }
    }
    if c.mask.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return Err("mask may not hold quotes, backslashes or control characters".into());
    }
    if c.tag.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("tag may not hold line breaks".into());
    }
    Ok(c)
}

/// Runs f with the config, parsed on first use; an invalid config fails
/// every call (a trap: the stage's on-error decides).
fn with_config<T>(f: impl FnOnce(&Config) -> T) -> T {
    CONFIG.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            match parse_config(&sluice::config()) {
                Ok(c) => *cell = Some(c),
                Err(e) => {
                    sluice::log(Level::Error, &format!("rust-filter: config: {}", e));
                    panic!("rust-filter: invalid config");
                }
            }
        }
        f(cell.as_ref().unwrap())
    })
}

fn on_request(e: &Envelope) -> Answer {
    with_config(|c| {
        if e.method == b"tools/call" && c.block.iter().any(|t| t.as_slice() == e.tool) {
            return Answer::reject(0, -32001, "tool blocked by policy");
        }
        if c.tag.is_empty() {
            return Answer::continue_();
        }
        Answer::continue_().set_header(b"X-Sluice-Tag", &c.tag)
    })
}

/// match_at: '#' matches one ASCII digit, any other byte itself; a match
/// right after a backslash (inside a JSON escape) does not count.
fn match_at(b: &[u8], i: usize, mask: &[u8]) -> bool {
    if i > 0 && b[i - 1] == b'\\' {
        return false;
    }
    mask.iter().zip(&b[i..i + mask.len()]).all(|(&m, &c)| if m == b'#' { c.is_ascii_digit() } else { c == m })
}

/// next_match returns where the first match at or after from starts, if
/// any; candidates are found by the mask's first literal byte.
fn next_match(b: &[u8], from: usize, mask: &[u8]) -> Option<usize> {
    if b.len() < mask.len() {
        return None;
    }
    let last = b.len() - mask.len(); // the last possible start
    match mask.iter().position(|&c| c != b'#') {
        Some(k) => {
            let mut s = from;
            while s <= last {
                let i = s + k + b[s + k..=last + k].iter().position(|&c| c == mask[k])?;
                if match_at(b, i - k, mask) {
                    return Some(i - k);
                }
                s = i - k + 1;
            }
            None
        }
        None => (from..=last).find(|&s| match_at(b, s, mask)),
    }
}

fn on_response(e: &Envelope) -> Answer {
    with_config(|c| {
        let (b, m) = (e.body, c.mask.as_slice());
        if m.is_empty() {
            return Answer::continue_();
        }
        let mut s = match next_match(b, 0, m) {
            Some(s) => s,
            None => return Answer::continue_(),
        };
        let mut out = b.to_vec();
        loop {
            out[s..s + m.len()].fill(b'*');
            match next_match(b, s + m.len(), m) {
                Some(n) => s = n,
                None => return Answer::replace(out),
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn sluice_describe() -> i64 {
    sluice::describe(DESCRIBE)
}

#[no_mangle]
pub extern "C" fn sluice_on_request(ptr: *const u8, len: u32) -> i64 {
    sluice::handle(ptr, len, on_request)
}

#[no_mangle]
pub extern "C" fn sluice_on_response(ptr: *const u8, len: u32) -> i64 {
    sluice::handle(ptr, len, on_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope<'a>(method: &'a [u8], tool: &'a [u8], body: &'a [u8]) -> Envelope<'a> {
        Envelope {
            hook: sluice::HOOK_REQUEST,
            notification: false,
            relay: false,
            status: 0,
            tunnel: b"",
            channel: b"main",
            session_id: b"",
            request_id: b"r1",
            method,
            tool,
            caller: b"",
            headers: Vec::new(),
            body,
        }
    }

    #[test]
    fn blocks_tags_and_masks() {
        sluice::testing::set_config(r#"{"block":["delete_file"],"mask":"ACCT-####","tag":"rust"}"#);
        let mut out = Vec::new();
        on_request(&envelope(b"tools/call", b"delete_file", b"{}")).encode(&mut out);
        assert_eq!(out[0], 3, "blocked tool is rejected");
        let a = on_request(&envelope(b"tools/list", b"", b"{}"));
        assert_eq!(a.edits, vec![(1u8, b"X-Sluice-Tag".to_vec(), b"rust".to_vec())]);
        let body = br#"{"text":"ACCT-1234, ACCT-12x4, \\ACCT-9999"}"#;
        let a = on_response(&envelope(b"tools/call", b"", body));
        assert_eq!(a.body.unwrap(), br#"{"text":"*********, ACCT-12x4, \\ACCT-9999"}"#.to_vec());
    }
}
