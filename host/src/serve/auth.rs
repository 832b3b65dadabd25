//! Tenants at the door: every API request carries `Authorization: Bearer <token>`, and the
//! policy's `[[tokens]]` say which tenant the token acts for. The tenant is all a handler
//! learns; what it may see and touch follows from it.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::App;
use super::problem::ApiError;
use std::sync::Arc;

/// The authenticated caller's tenant.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub(crate) String);

/// The longest token looked at (ours are 67 characters).
const MAX_TOKEN: usize = 256;

impl FromRequestParts<Arc<App>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN)
            .ok_or_else(ApiError::unauthorized)?;
        match app.runtime.policy().token_tenant(token) {
            Some(tenant) => Ok(Tenant(tenant.to_owned())),
            None => Err(ApiError::unauthorized()),
        }
    }
}
