//! HMAC-SHA256 request signing, checked before anything reads the body.
//!
//! `Authorization: HMAC-SHA256 <hex>` where `<hex>` is the HMAC of the raw
//! body bytes as received. Several secrets may be active (key rotation); a
//! signature made with any of them passes. Comparison is constant-time.

use axum::body::{Body, Bytes};
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AppError;
use crate::operators::registry::Tenant;
use crate::AppState;

/// Bodies larger than this are refused with 413 before they are verified.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// The active provider secrets, keyed once when loaded.
#[derive(Clone)]
pub struct SigningKeys(Vec<HmacSha256>);

/// Never shows a secret.
impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} active)", self.0.len())
    }
}

impl SigningKeys {
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> SigningKeys {
        SigningKeys(
            secrets
                .iter()
                .map(|s| HmacSha256::new_from_slice(s.as_ref()).expect("HMAC takes keys of any length"))
                .collect(),
        )
    }

    /// Whether `signature` is the HMAC of `body` under any active secret.
    pub fn verify(&self, body: &[u8], signature: &[u8]) -> bool {
        // Every key is tried, so timing does not reveal which one matched.
        self.0.iter().fold(false, |matched, key| {
            let mut mac = key.clone();
            mac.update(body);
            mac.verify_slice(signature).is_ok() | matched
        })
    }
}

/// The signature bytes of an `Authorization: HMAC-SHA256 <hex>` header.
pub fn parse_authorization(value: &[u8]) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, hex_digest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("HMAC-SHA256") {
        return None;
    }
    let hex_digest = hex_digest.trim();
    if hex_digest.len() != 64 {
        return None;
    }
    hex::decode(hex_digest).ok()
}

/// Computes the header value a provider sends for `body` (used by the
/// project's own load and simulation tools, and by tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("HMAC-SHA256 {}", hex::encode(mac.finalize().into_bytes()))
}

/// Middleware of `/v1/process`: reads the body (at most 64 KiB), verifies it
/// with `HMAC_SECRETS`, and hands the same bytes on for operator `default`.
/// Nothing touches the database unless the signature holds.
pub async fn require_signature(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tenant = state.operators.default_tenant();
    verified(&state.signing, tenant, request, next).await
}

/// Middleware of `/v1/operators/{code}/process`: the same, with the keys of
/// the operator the path names (from memory); an unknown one is 404 code 120.
pub async fn require_operator_signature(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
    next: Next,
) -> Response {
    match state.operators.by_code(&code) {
        Some(tenant) => {
            let keys = tenant.keys.clone();
            verified(&keys, tenant, request, next).await
        }
        None => AppError::OperatorNotFound.into_response(),
    }
}

async fn verified(keys: &SigningKeys, tenant: Arc<Tenant>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let too_large =
                std::error::Error::source(&error).is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            return if too_large {
                AppError::PayloadTooLarge.into_response()
            } else {
                AppError::BadRequest("could not read the request body".into()).into_response()
            };
        }
    };
    let signature = parts.headers.get(AUTHORIZATION).and_then(|v| parse_authorization(v.as_bytes()));
    match signature {
        Some(signature) if keys.verify(&bytes, &signature) => {
            parts.extensions.insert(tenant);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        _ => {
            tracing::warn!(path = %parts.uri.path(), operator = %tenant.code, "rejected a request with a missing or wrong signature");
            AppError::BadSignature.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &str = r#"{"user_id":"8|USDT|USD","currency":"USD","game":"acceptance:test"}"#;
    const VECTOR_HEX: &str = "442c4cd8926008096225416b21f5a1862fbf4fc4e5224362e3b463e85a39f40a";

    #[test]
    fn signs_the_contract_check_vector() {
        assert_eq!(sign(b"test", VECTOR_BODY.as_bytes()), format!("HMAC-SHA256 {VECTOR_HEX}"));
    }

    #[test]
    fn keys_show_how_many_are_active_and_never_a_secret() {
        let shown = format!("{:?}", SigningKeys::new(&["s3cr3t-one", "s3cr3t-two"]));
        assert_eq!(shown, "SigningKeys(2 active)");
    }

    #[test]
    fn accepts_upper_case_hex_and_any_active_secret() {
        let keys = SigningKeys::new(&["old", "test"]);
        let upper =
            parse_authorization(format!("HMAC-SHA256 {}", VECTOR_HEX.to_uppercase()).as_bytes()).unwrap();
        assert!(keys.verify(VECTOR_BODY.as_bytes(), &upper));
    }

    #[test]
    fn refuses_other_bodies_secrets_and_malformed_headers() {
        let keys = SigningKeys::new(&["test"]);
        let good = parse_authorization(format!("HMAC-SHA256 {VECTOR_HEX}").as_bytes()).unwrap();
        assert!(!keys.verify(b"{}", &good));
        assert!(!SigningKeys::new(&["other"]).verify(VECTOR_BODY.as_bytes(), &good));
        assert!(parse_authorization(b"HMAC-SHA256").is_none());
        assert!(parse_authorization(b"Bearer abc").is_none());
        assert!(parse_authorization(format!("HMAC-SHA256 {}", &VECTOR_HEX[..62]).as_bytes()).is_none());
        assert!(parse_authorization(format!("HMAC-SHA256 {}zz", &VECTOR_HEX[..62]).as_bytes()).is_none());
    }
}
