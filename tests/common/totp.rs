//! RFC 6238 codes for the tests, computed here (HMAC-SHA1 over the time
//! step, dynamic truncation) from the base32 secret the server hands out,
//! not by the server's own code.

use hmac::{Hmac, Mac};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 4648 base32 (no padding), as authenticator apps read `secret=`.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let index = alphabet
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("{c} is not base32")) as u32;
        value = (value << 5) | index;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
            value &= (1 << bits) - 1;
        }
    }
    out
}

/// The 6-digit code of time step `step`.
pub fn code_at(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

/// The current time step.
pub fn step_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// The current step, at least 3 s from its end (waiting for the next if
/// not), so that the server is in the same step when a request arrives.
pub fn fresh_step() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_step = now.as_secs_f64() % 30.0;
    if into_step > 27.0 {
        std::thread::sleep(Duration::from_secs_f64(30.0 - into_step + 0.05));
    }
    step_now()
}
