//! Requests to a snapreg server with the client's retry policy: connection
//! errors, `429` and `5xx` are retried with exponential backoff (honouring
//! `Retry-After`) until `--retry-for` runs out; other answers are final.

use super::Failure;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the server is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// The registry's base URL.
    #[arg(long, env = "SNAPREG_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A bearer token.
    #[arg(long, env = "SNAPREG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (read when --token is not given).
    #[arg(long, env = "SNAPREG_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust this PEM certificate authority too (a private CA's server).
    #[arg(long, env = "SNAPREG_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Keep retrying connection errors, 429 and 5xx answers this long.
    #[arg(long, env = "SNAPREG_RETRY_FOR", default_value = "5m", value_parser = crate::config::duration)]
    pub retry_for: Duration,
}

#[derive(Clone)]
pub struct Remote {
    base: String,
    client: Client,
    pub retry_for: Duration,
}

/// An answer that is not a success, as the error envelope says it.
pub fn refusal(status: StatusCode, body: &[u8]) -> Failure {
    let envelope: Option<Value> = serde_json::from_slice(body).ok();
    let (code, message) = match &envelope {
        Some(v) => (
            v["error"]["code"].as_str().unwrap_or("").to_owned(),
            v["error"]["message"].as_str().unwrap_or("").to_owned(),
        ),
        None => (String::new(), String::from_utf8_lossy(body).into_owned()),
    };
    Failure::Refused {
        status: status.as_u16(),
        code,
        message,
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// How long the server asked to wait (`Retry-After` in seconds), if it did.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> Result<Remote, Failure> {
        let token = match (&args.token, &args.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::Local(format!("token file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Failure::Local("the token is not a valid header value".into()))?;
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = Client::builder()
            .default_headers(headers)
            .user_agent(concat!("snapreg/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Per request: a chunk may take a while; a download cut off
            // by it resumes where it stopped.
            .timeout(Duration::from_secs(300));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::Local(format!("CA certificate {}: {e}", path.display())))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Failure::Local(format!("CA certificate {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|e| Failure::Local(format!("HTTP client: {e}")))?;
        Ok(Remote {
            base: args.server.trim_end_matches('/').to_owned(),
            client,
            retry_for: args.retry_for,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends what `build` makes, again after each retryable failure; the
    /// response of the first final answer, successful or not.
    pub fn send(&self, build: impl FnMut() -> RequestBuilder) -> Result<Response, Failure> {
        self.send_with(true, build)
    }

    /// Like `send`; a request that must not be repeated once the server may
    /// have acted on it (`repeatable: false`) is retried only when it never
    /// reached the server (no connection) or the server answered that it did
    /// not act (a `5xx`: the transaction rolled back, or `429`).
    pub fn send_with(
        &self,
        repeatable: bool,
        mut build: impl FnMut() -> RequestBuilder,
    ) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(250);
        loop {
            let (wait, why) = match build().send() {
                Ok(response) if !retryable(response.status()) => return Ok(response),
                Ok(response) => {
                    let wait = retry_after(response.headers()).unwrap_or(backoff);
                    (wait, format!("the server answered {}", response.status()))
                }
                Err(e) if repeatable || e.is_connect() => (backoff, describe(&e)),
                Err(e) => {
                    return Err(Failure::Unreachable(format!(
                        "{} (not repeated: the server may have acted on it)",
                        describe(&e)
                    )))
                }
            };
            if Instant::now() + wait > deadline {
                return Err(Failure::Unreachable(format!(
                    "{why}; gave up after {}",
                    humantime::format_duration(self.retry_for)
                )));
            }
            eprintln!(
                "snapreg: {why}; retrying in {}",
                humantime::format_duration(wait)
            );
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }

    /// A request whose answer must be a success with a JSON body.
    pub fn json(&self, build: impl FnMut() -> RequestBuilder) -> Result<Value, Failure> {
        self.json_with(true, build)
    }

    fn json_with(
        &self,
        repeatable: bool,
        build: impl FnMut() -> RequestBuilder,
    ) -> Result<Value, Failure> {
        let response = self.send_with(repeatable, build)?;
        let status = response.status();
        let body = response
            .bytes()
            .map_err(|e| Failure::Unreachable(describe(&e)))?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Unreachable(format!("the server's answer is not JSON: {e}")))
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.json(|| self.request(Method::GET, path))
    }

    pub fn send_json(&self, method: Method, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send_json_with(true, method, path, body)
    }

    pub fn send_json_with(
        &self,
        repeatable: bool,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, Failure> {
        let text = body.to_string();
        self.json_with(repeatable, || {
            self.request(method.clone(), path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text.clone())
        })
    }
}

/// A transport error with its cause (reqwest's own message is terse).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
