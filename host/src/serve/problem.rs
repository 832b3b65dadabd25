//! Errors as the API answers them: a status and a JSON body that says what is wrong, where,
//! and how to fix it. Bad input is a 4xx with a reason; only the service's own failures are
//! 500s, and their details go to the log, not to the caller.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;
use crate::model::text;

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: Problem,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A stable, kebab-case code to branch on (`invalid-workflow`, `not-found`, ...).
    pub(crate) code: &'static str,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) help: Option<String>,
    /// For an invalid workflow: each problem, with its line and column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) diagnostics: Vec<DiagnosticBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DiagnosticBody {
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) help: Option<String>,
}

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    problem: Problem,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            problem: Problem {
                code,
                message: message.into(),
                help: None,
                diagnostics: Vec::new(),
            },
        }
    }

    /// Its status and body, for an answer that is not HTTP (a NATS reply).
    pub(crate) fn into_parts(self) -> (StatusCode, ErrorBody) {
        (
            self.status,
            ErrorBody {
                error: self.problem,
            },
        )
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.problem.help = Some(help.into());
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// What a caller may not see is not there: another tenant's run is a 404, as is one that
    /// does not exist.
    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} `{}`", text::inert(text::truncate(id, 128))),
        )
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request needs an API token: `Authorization: Bearer <token>`",
        )
        .help("an operator makes one with `wasm-orch token new --tenant NAME --policy FILE`")
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to do this; its log says why",
        )
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidWorkflow(diagnostics) => {
                let mut e = Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-workflow",
                    format!("the workflow has {} problem(s)", diagnostics.len()),
                );
                e.problem.diagnostics = diagnostics
                    .iter()
                    .take(50)
                    .map(|d| DiagnosticBody {
                        message: d.message().to_owned(),
                        line: d.line(),
                        column: d.column(),
                        help: d.fix().map(str::to_owned),
                    })
                    .collect();
                e
            }
            Error::WrongTenant { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "wrong-tenant",
                "this workflow belongs to another tenant",
            ),
            e @ (Error::InvalidRunId(_) | Error::InvalidTenant(_)) => {
                Self::bad_request(e.to_string())
            }
            e @ Error::RunIdInUse(_) => Self::conflict(e.to_string()),
            Error::UnknownRun(id) => Self::not_found("run", &id),
            Error::NotResumable { run, why } => {
                Self::conflict(format!("run `{run}` cannot be resumed: {why}"))
            }
            e @ Error::Component { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-component", e.to_string())
            }
            other => Self::internal(format!("{other:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.problem,
            }),
        )
            .into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
