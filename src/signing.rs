//! Standard Webhooks v1 signatures (pure: no I/O, no clock — "now" is passed in).
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, several
//! space-separated during a secret rotation. Secrets are `whsec_` + base64 of the key bytes.
//! Also the plain hex HMAC of the body that some external capture providers send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A signing key, decoded from its `whsec_…` form.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    #[error("timestamp outside the tolerance window")]
    Stale,
    #[error("no signature matches")]
    BadSignature,
}

impl VerifyError {
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedHeader(_) => "malformed_signature",
            VerifyError::Stale => "stale_timestamp",
            VerifyError::BadSignature => "invalid_signature",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret (expected \"whsec_\" followed by base64)")]
pub struct InvalidSecret;

impl SigningKey {
    /// Parses `whsec_<base64>` (a bare base64 key is accepted too, as other libraries do).
    pub fn from_secret(secret: &str) -> Result<Self, InvalidSecret> {
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = B64.decode(b64).map_err(|_| InvalidSecret)?;
        if key.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(Self(key))
    }

    /// A fresh random secret in `whsec_` form (32 random bytes).
    pub fn generate_secret() -> String {
        let bytes: [u8; 32] = rand::random();
        format!("whsec_{}", B64.encode(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// A separate key for another purpose (e.g. signing asset URLs), derived from this one.
    pub fn derive(&self, purpose: &str) -> SigningKey {
        SigningKey(self.hmac(purpose.as_bytes()).to_vec())
    }

    /// The key bytes (for the plain hex HMAC of external providers).
    pub fn raw(&self) -> &[u8] {
        &self.0
    }

    /// Raw HMAC-SHA256 of arbitrary data (used to sign asset URLs).
    pub fn hmac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// Verifies a Standard Webhooks request against any of `keys` (current first, then previous
/// ones during a rotation). Checks the timestamp window before the signature.
pub fn verify(
    keys: &[SigningKey],
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let msg_id = msg_id.filter(|s| !s.is_empty()).ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let ts_text = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| VerifyError::MalformedHeader(HEADER_TIMESTAMP))?;
    // abs_diff: a timestamp like i64::MIN must be stale, not an overflow.
    if now_unix.abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let candidates: Vec<Vec<u8>> = signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::MalformedHeader(HEADER_SIGNATURE));
    }
    for key in keys {
        let expected = key.sign(msg_id, ts, body);
        let expected = B64.decode(&expected[3..]).expect("we just encoded it");
        if candidates.iter().any(|c| bool::from(c.as_slice().ct_eq(&expected))) {
            return Ok(());
        }
    }
    Err(VerifyError::BadSignature)
}

/// Verifies a plain hex HMAC-SHA256 of the body (external providers), constant time.
pub fn verify_hex(key: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
    let header = header.ok_or(VerifyError::MissingHeader("signature"))?;
    let hex = header.trim().strip_prefix("sha256=").unwrap_or(header.trim());
    let given = hex::decode(hex).map_err(|_| VerifyError::MalformedHeader("signature"))?;
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_example() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(key.sign(ID, TS, BODY), SIG);
    }

    #[test]
    fn verifies_and_rejects() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        let keys = [key];
        let v = |id, ts: &str, sig, body: &[u8], now| {
            verify(&keys, Some(id), Some(ts), Some(sig), body, now, 300)
        };
        assert_eq!(v(ID, "1614265330", SIG, BODY, TS), Ok(()));
        // Several signatures (rotation): any match is enough.
        let multi = format!("v1,Zm9v {SIG} v2,whatever");
        assert_eq!(v(ID, "1614265330", &multi, BODY, TS + 299), Ok(()));
        assert_eq!(v(ID, "1614265330", SIG, br#"{"test": 2432232315}"#, TS), Err(VerifyError::BadSignature));
        assert_eq!(v("msg_other", "1614265330", SIG, BODY, TS), Err(VerifyError::BadSignature));
        assert_eq!(v(ID, "1614265330", SIG, BODY, TS + 301), Err(VerifyError::Stale));
        assert_eq!(v(ID, "1614265330", SIG, BODY, TS - 301), Err(VerifyError::Stale));
        // Extreme timestamps are stale, not an arithmetic overflow.
        assert_eq!(v(ID, "-9223372036854775808", SIG, BODY, TS), Err(VerifyError::Stale));
        assert_eq!(v(ID, "9223372036854775807", SIG, BODY, -TS), Err(VerifyError::Stale));
        assert_eq!(v(ID, "soon", SIG, BODY, TS), Err(VerifyError::MalformedHeader(HEADER_TIMESTAMP)));
        assert_eq!(
            v(ID, "1614265330", "g0hM9SsE", BODY, TS),
            Err(VerifyError::MalformedHeader(HEADER_SIGNATURE))
        );
        assert_eq!(
            verify(&keys, None, Some("1"), Some(SIG), BODY, TS, 300),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
    }

    #[test]
    fn previous_secrets_still_verify() {
        let old = SigningKey::from_secret(SECRET).unwrap();
        let new = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        let sig = old.sign(ID, TS, BODY);
        assert_eq!(
            verify(std::slice::from_ref(&new), Some(ID), Some("1614265330"), Some(&sig), BODY, TS, 300),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(verify(&[new, old], Some(ID), Some("1614265330"), Some(&sig), BODY, TS, 300), Ok(()));
    }

    #[test]
    fn generated_secrets_parse() {
        let s = SigningKey::generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(SigningKey::from_secret(&s).unwrap().0.len(), 32);
        assert!(SigningKey::from_secret("whsec_!!!").is_err());
    }

    #[test]
    fn hex_signatures() {
        let key = b"provider-secret";
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(BODY);
        let hex = hex::encode(mac.finalize().into_bytes());
        assert_eq!(verify_hex(key, Some(&hex), BODY), Ok(()));
        assert_eq!(verify_hex(key, Some(&format!("sha256={hex}")), BODY), Ok(()));
        assert_eq!(verify_hex(key, Some(&hex), b"tampered"), Err(VerifyError::BadSignature));
        assert_eq!(verify_hex(key, Some("zz"), BODY), Err(VerifyError::MalformedHeader("signature")));
    }
}
