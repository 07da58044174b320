//! The webhook verifiers on arbitrary headers and bodies: never panic, never accept a forgery;
//! and a message signed with the key always verifies (whatever its id and body).
#![no_main]

use vigil::signing::{SigningKey, verify, verify_hex};

const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: i64 = 1_800_000_000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // id 0xFF timestamp 0xFF signature 0xFF body
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let (Some(id), Some(ts), Some(sig), Some(body)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    fn text(b: &[u8]) -> Option<&str> {
        std::str::from_utf8(b).ok()
    }
    let key = SigningKey::from_secret(SECRET).unwrap();
    let keys = [key.clone()];
    let forged = verify(&keys, text(id), text(ts), text(sig), body, NOW, 300);
    if forged.is_ok() {
        // Accepted: then the signature must be the real one for this id, timestamp and body.
        let ts: i64 = text(ts).unwrap().trim().parse().unwrap();
        let real = key.sign(text(id).unwrap(), ts, body);
        assert!(text(sig).unwrap().split(' ').any(|s| s == real), "accepted a signature that is not ours");
    }
    let _ = verify_hex(key.raw(), text(sig), body);
    if let Some(id) = text(id).filter(|i| !i.is_empty()) {
        let signature = key.sign(id, NOW, body);
        assert!(verify(&keys, Some(id), Some(&NOW.to_string()), Some(&signature), body, NOW, 300).is_ok());
    }
});
