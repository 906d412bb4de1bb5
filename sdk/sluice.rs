//! The Sluice native plugin ABI (sdk/ABI.md, version 1) for Rust, in one
//! module and without crates. Copy it next to your `lib.rs` (`sluice plugin
//! new --lang rust` does), declare it with `mod sluice;`, export your
//! handlers with `sluice::handle`, and build with
//! `rustc --target wasm32-unknown-unknown --crate-type cdylib -O -C strip=symbols lib.rs`.
//!
//! Off wasm32 (in `rustc --test`), the host functions are a fake host:
//! `sluice::testing::set_config` sets the config, logs go to stderr, and the
//! key/value store is a map.
#![allow(dead_code)]

use std::cell::RefCell;

/// Hooks (envelope offset 4).
pub const HOOK_REQUEST: u8 = 1;
pub const HOOK_RESPONSE: u8 = 2;
pub const HOOK_HTTP_RESPONSE: u8 = 3;

/// Log levels of `log`.
#[derive(Clone, Copy)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "sluice")]
    extern "C" {
        pub fn log(level: i32, ptr: *const u8, len: u32);
        pub fn config(ptr: *mut u8, cap: u32) -> u32;
        pub fn kv_get(kptr: *const u8, klen: u32, vptr: *mut u8, vcap: u32) -> i32;
        pub fn kv_set(kptr: *const u8, klen: u32, vptr: *const u8, vlen: u32);
        pub fn kv_delete(kptr: *const u8, klen: u32);
    }
}

/// Writes a log line through the host (tagged with plugin and request).
pub fn log(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        imports::log(level as i32, msg.as_ptr(), msg.len() as u32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("plugin log {}: {}", level as i32, msg);
}

/// Returns the plugin's config, a JSON object.
pub fn config() -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        let mut buf = vec![0u8; 1024];
        let n = imports::config(buf.as_mut_ptr(), buf.len() as u32) as usize;
        if n > buf.len() {
            buf.resize(n, 0);
            imports::config(buf.as_mut_ptr(), n as u32);
        }
        buf.truncate(n);
        buf
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::CONFIG.with(|c| c.borrow().clone())
}

/// Looks a key up in the plugin's key/value store.
pub fn kv_get(key: &[u8]) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        let mut buf = vec![0u8; 256];
        let n = imports::kv_get(key.as_ptr(), key.len() as u32, buf.as_mut_ptr(), buf.len() as u32);
        if n < 0 {
            return None;
        }
        if n as usize > buf.len() {
            buf.resize(n as usize, 0);
            imports::kv_get(key.as_ptr(), key.len() as u32, buf.as_mut_ptr(), n as u32);
        }
        buf.truncate(n as usize);
        Some(buf)
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::KV.with(|kv| kv.borrow().iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
}

/// Sets a key in the plugin's key/value store.
pub fn kv_set(key: &[u8], value: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        imports::kv_set(key.as_ptr(), key.len() as u32, value.as_ptr(), value.len() as u32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::KV.with(|kv| {
        let mut kv = kv.borrow_mut();
        kv.retain(|(k, _)| k != key);
        kv.push((key.to_vec(), value.to_vec()));
    })
}

/// Deletes a key from the plugin's key/value store.
pub fn kv_delete(key: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    unsafe {
        imports::kv_delete(key.as_ptr(), key.len() as u32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::KV.with(|kv| kv.borrow_mut().retain(|(k, _)| k != key))
}

/// The fake host used off wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use std::cell::RefCell;
    thread_local! {
        pub static CONFIG: RefCell<Vec<u8>> = RefCell::new(b"{}".to_vec());
        pub static KV: RefCell<Vec<(Vec<u8>, Vec<u8>)>> = RefCell::new(Vec::new());
    }
    /// Sets the config the plugin reads.
    pub fn set_config(json: &str) {
        CONFIG.with(|c| *c.borrow_mut() = json.as_bytes().to_vec());
    }
}

/// A parsed envelope; every field borrows the host's buffer.
pub struct Envelope<'a> {
    pub hook: u8,
    pub notification: bool,
    pub relay: bool,
    pub status: u32,
    pub tunnel: &'a [u8],
    pub channel: &'a [u8],
    pub session_id: &'a [u8],
    pub request_id: &'a [u8],
    pub method: &'a [u8],
    pub tool: &'a [u8],
    pub caller: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn str_at<'a>(b: &'a [u8], o: &mut usize) -> Option<&'a [u8]> {
    let n = u32_at(b, *o)? as usize;
    let s = b.get(*o + 4..(*o + 4).checked_add(n)?)?;
    *o += 4 + n;
    Some(s)
}

/// Parses an envelope (sdk/ABI.md); None if it is malformed.
pub fn parse(b: &[u8]) -> Option<Envelope> {
    if b.len() < 12 {
        return None;
    }
    let mut o = 12;
    let mut f = [&b[0..0]; 7];
    for s in f.iter_mut() {
        *s = str_at(b, &mut o)?;
    }
    let n = u32_at(b, o)? as usize;
    o += 4;
    let mut headers = Vec::new();
    for _ in 0..n {
        let name = str_at(b, &mut o)?;
        let value = str_at(b, &mut o)?;
        headers.push((name, value));
    }
    let body = str_at(b, &mut o)?;
    Some(Envelope {
        hook: b[4],
        notification: b[5] & 1 != 0,
        relay: b[5] & 2 != 0,
        status: u32_at(b, 8)?,
        tunnel: f[0],
        channel: f[1],
        session_id: f[2],
        request_id: f[3],
        method: f[4],
        tool: f[5],
        caller: f[6],
        headers,
        body,
    })
}

/// What a handler answers.
pub enum Action {
    Continue = 0,
    Replace = 1,
    Respond = 2,
    Reject = 3,
    Drop = 4,
}

/// A handler's answer: an action, header edits and an optional body.
pub struct Answer {
    pub action: Action,
    pub status: u32,
    pub edits: Vec<(u8, Vec<u8>, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Answer {
    /// Passes the message on unchanged (the cheap path).
    pub fn continue_() -> Answer {
        Answer { action: Action::Continue, status: 0, edits: Vec::new(), body: None }
    }
    /// Passes body on instead of the message (a single JSON object).
    pub fn replace(body: Vec<u8>) -> Answer {
        Answer { action: Action::Replace, status: 0, edits: Vec::new(), body: Some(body) }
    }
    /// Answers with a JSON-RPC error (message must not need JSON escaping).
    pub fn reject(status: u32, code: i32, message: &str) -> Answer {
        let err = format!("{{\"code\":{},\"message\":\"{}\"}}", code, message);
        Answer { action: Action::Reject, status, edits: Vec::new(), body: Some(err.into_bytes()) }
    }
    /// Adds a header edit that sets name to value (a Continue becomes a Replace).
    pub fn set_header(mut self, name: &[u8], value: &[u8]) -> Answer {
        if let Action::Continue = self.action {
            self.action = Action::Replace;
        }
        self.edits.push((1, name.to_vec(), value.to_vec()));
        self
    }
    fn is_continue(&self) -> bool {
        matches!(self.action, Action::Continue) && self.edits.is_empty()
    }
    /// Encodes the answer (sdk/ABI.md).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let has_body = self.body.is_some() && matches!(self.action, Action::Replace | Action::Respond);
        out.push(match self.action {
            Action::Continue => 0,
            Action::Replace => 1,
            Action::Respond => 2,
            Action::Reject => 3,
            Action::Drop => 4,
        });
        out.extend_from_slice(&[has_body as u8, 0, 0]);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&(self.edits.len() as u32).to_le_bytes());
        for (op, name, value) in &self.edits {
            out.push(*op);
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        let body: &[u8] = self.body.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
}

thread_local! {
    static INPUT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static OUTPUT: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

/// Runs handler on the envelope at (ptr, len) and returns the ABI result
/// (`ptr<<32 | len` of the answer, 0 = continue). A malformed envelope traps.
pub fn handle(ptr: *const u8, len: u32, handler: fn(&Envelope) -> Answer) -> i64 {
    let buf = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
    let env = match parse(buf) {
        Some(e) => e,
        None => panic!("sluice: malformed envelope"),
    };
    let answer = handler(&env);
    if answer.is_continue() {
        return 0;
    }
    OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        answer.encode(&mut o);
        ((o.as_ptr() as u64) << 32 | o.len() as u64) as i64
    })
}

/// Returns the ABI result for a static description document.
pub fn describe(json: &'static str) -> i64 {
    ((json.as_ptr() as u64) << 32 | json.len() as u64) as i64
}

#[no_mangle]
pub extern "C" fn sluice_abi_version() -> i32 {
    1
}

/// One growing buffer the host writes each envelope into.
#[no_mangle]
pub extern "C" fn sluice_alloc(size: u32) -> *mut u8 {
    INPUT.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < size as usize {
            b.resize(size as usize, 0);
        }
        b.as_mut_ptr()
    })
}
