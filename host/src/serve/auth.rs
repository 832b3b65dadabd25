//! Tenants at the door: every API request carries `Authorization: Bearer <token>` (or, for a
//! browser's WebSocket, which cannot set headers, the subprotocol `wasm-orch.token.<token>`),
//! and the policy's `[[tokens]]` say which tenant the token acts for. The tenant is all a
//! handler learns; what it may see and touch follows from it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::App;
use super::problem::ApiError;

/// The authenticated caller's tenant.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub(crate) String);

/// A WebSocket subprotocol that carries the token.
pub(crate) const WS_TOKEN_PREFIX: &str = "wasm-orch.token.";
/// The WebSocket subprotocol the server speaks (selected when offered).
pub(crate) const WS_PROTOCOL: &str = "wasm-orch.v1";

/// The longest token looked at (ours are 67 characters).
const MAX_TOKEN: usize = 256;

impl FromRequestParts<Arc<App>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header_text = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = header_text(header::AUTHORIZATION).and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
        let offered = || {
            header_text(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| {
                v.split(',')
                    .find_map(|p| p.trim().strip_prefix(WS_TOKEN_PREFIX))
            })
        };
        let token = bearer
            .or_else(offered)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN)
            .ok_or_else(ApiError::unauthorized)?;
        match app.runtime.policy().token_tenant(token) {
            Some(tenant) => Ok(Tenant(tenant.to_owned())),
            None => Err(ApiError::unauthorized()),
        }
    }
}
