//! The web console (issue 13): server-rendered pages over the operator API, served by `ui`
//! alone or by `worker` when `flow.ui.listen` is set.
//!
//! Every page opens the store the way a CLI command does ([`open_store`]): through the socket
//! of the process that owns it when one lives (a worker, a `run`), or itself otherwise, so the
//! console shows what the CLI shows and never holds the store between requests.
//!
//! Everything that comes from the store or the request goes through [`esc`] before it reaches
//! the page; the pages carry no script (auto-refresh is a `<meta>` tag) and a
//! Content-Security-Policy forbids any, so a `<script>` that slipped through would not run.

use super::commands::{next_steps, open_store, release, timeline_order};
use super::AppInfo;
use crate::console::api::open::Access;
use crate::console::api::{ApiError, ErrorKind, Started};
use crate::console::settings::FlowSettings;
use crate::engine::units::UNIT_STEP;
use crate::store::{RunFilter, RunId, RunRecord, RunStatus, StepRecord, StepStatus};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// The most runs the runs page lists at once (newest first); the counts cover all of them.
const RUNS_SHOWN: usize = 200;
/// The most step rows the timeline draws; the steps inside units are aggregated anyway.
const STEP_ROWS: usize = 500;
/// A step name with more records than this gets one aggregated bar, not one bar per record.
const PER_NAME: usize = 100;
/// Failed units listed by key on the run page.
const FAILED_UNITS_SHOWN: usize = 20;

/// What every request needs.
struct Console {
    settings: FlowSettings,
    app: AppInfo,
    /// The bearer token requests must carry; set whenever it is configured.
    token: Option<String>,
    /// The address the console listens on.
    addr: SocketAddr,
}

/// A console bound to its address, not yet serving.
pub(super) struct Bound {
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
}

impl Bound {
    /// The address it listens on (the port chosen by the system when 0 was asked).
    pub(super) fn addr(&self) -> SocketAddr {
        self.console.addr
    }
}

/// Binds the console at `listen`, refusing an address beyond loopback without a token.
pub(super) async fn bind(
    app: AppInfo,
    settings: &FlowSettings,
    listen: SocketAddr,
) -> Result<Bound, String> {
    let token = settings.ui.token.as_ref().map(|t| t.expose().to_owned());
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "the web console would listen on {listen}, beyond loopback, without a token: set flow.ui.token (or FLOW_UI__TOKEN) to a long random value, such as the output of `openssl rand -hex 32`, or listen on 127.0.0.1"
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("the web console cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the web console cannot listen on {listen}: {e}"))?;
    Ok(Bound {
        listener,
        console: Arc::new(Console {
            settings: settings.clone(),
            app,
            token,
            addr,
        }),
    })
}

/// Serves the console until `stop` completes.
pub(super) async fn serve(bound: Bound, stop: impl Future<Output = ()> + Send + 'static) {
    let console = bound.console.clone();
    let router = Router::new()
        .route("/", get(runs_page))
        .route("/runs", get(runs_page))
        .route("/run", get(run_page))
        .route("/run/resolve", get(resolve_page).post(resolve))
        .route("/run/{action}", get(confirm_page).post(act))
        .route("/stats", get(stats_page))
        .route("/login", get(login_page).post(login))
        .layer(axum::middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console);
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(bound.listener, service)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "the web console stopped serving");
    }
}

/// Byte-wise comparison whose time does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of the cookie that carries a signed-in browser's proof of the token.
const SESSION: &str = "flow_ui";

/// The cookie's value for `token`: a digest, so the token itself is not stored in browsers.
fn session_value(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("flow web console session\n{token}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION)?.strip_prefix('='))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

fn login_form(message: Option<&str>) -> String {
    format!(
        "<h1>Sign in</h1>{}<form method=\"post\" action=\"/login\"><label for=\"token\">Token (flow.ui.token)</label> <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required> <button type=\"submit\">Sign in</button></form>",
        message.map_or(String::new(), |m| format!("<p class=\"error\">{}</p>", esc(m)))
    )
}

async fn login_page() -> Response {
    page("Sign in", None, &login_form(None))
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &console.token else {
        return Redirect::to("/runs").into_response();
    };
    if !same(form.token.trim().as_bytes(), token.as_bytes()) {
        tracing::warn!(who = %peer, "web console sign-in with a wrong token");
        let mut response = page("Sign in", None, &login_form(Some("That is not the token.")));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    tracing::info!(who = %peer, "web console sign-in");
    let mut response = Redirect::to("/runs").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION}={}; HttpOnly; SameSite=Strict; Path=/",
        session_value(token)
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Checks every request: the bearer token when one is configured; without one (loopback only)
/// the Host header must name this machine, so a web page cannot reach the console through a
/// DNS name it controls. A form post must come from the console's own pages.
async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(token) = &console.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let by_header = given.is_some_and(|g| same(g.trim().as_bytes(), token.as_bytes()));
        let by_cookie = session_cookie(headers)
            .is_some_and(|c| same(c.as_bytes(), session_value(token).as_bytes()));
        // The login page itself checks the token it is given
        let login = request.uri().path() == "/login";
        if !(by_header || by_cookie || login) {
            let mut response = error_page(
                StatusCode::UNAUTHORIZED,
                "Token required",
                "This console requires the token of its settings (flow.ui.token): sign in on /login, or send it in an `Authorization: Bearer ...` header.",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flow\""),
            );
            return response;
        }
    } else {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let local = matches!(name, "localhost" | "127.0.0.1" | "[::1]")
            || name == console.addr.ip().to_string()
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !local {
            return error_page(
                StatusCode::FORBIDDEN,
                "Unknown host",
                "Without a token the console answers only to localhost addresses.",
            );
        }
    }
    if request.method() == Method::POST {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let from_here = match (origin, host) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").map(|(_, rest)| rest) == Some(host)
            }
            (None, _) => true,
            (Some(_), None) => false,
        };
        if !from_here {
            return error_page(
                StatusCode::FORBIDDEN,
                "Cross-site request refused",
                "Actions are accepted only from the console's own pages.",
            );
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Text made safe for HTML content and quoted attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text made safe for a URL query value (then escaped for HTML where written).
fn url_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header{background:#1f2937;color:#fff;padding:.6rem 1rem}
header a{color:#fff;margin-right:1rem}
main{padding:1rem;max-width:1200px}
a{color:#0b57d0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
pre{background:#f5f5f5;padding:.5rem;overflow:auto;max-height:24rem}
.status{font-weight:600}
.s-succeeded{color:#1b5e20}.s-failed,.s-needs-attention{color:#b71c1c}
.s-running,.s-sleeping{color:#0d47a1}.s-cancelled,.s-paused,.s-queued{color:#4e342e}
.counts a{margin-right:1rem}
form.inline{display:inline}
button{font-size:1rem;padding:.3rem .8rem;cursor:pointer}
button.danger{background:#b71c1c;color:#fff;border:0}
label{margin-right:.3rem}
.next li{font-family:monospace}
.error{color:#b71c1c}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dd{margin:0}
a.action{display:inline-block;padding:.3rem .8rem;border:1px solid #0b57d0;border-radius:3px;text-decoration:none;margin-right:.5rem}
a:focus,button:focus,input:focus,select:focus{outline:3px solid #f9a825;outline-offset:1px}
";

fn page(title: &str, refresh: Option<u32>, body: &str) -> Response {
    let meta = match refresh {
        Some(s) if s > 0 => format!("<meta http-equiv=\"refresh\" content=\"{s}\">"),
        _ => String::new(),
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">{meta}<title>{} · flow</title><style>{STYLE}</style></head><body><header><nav><a href=\"/runs\">Runs</a><a href=\"/stats\">Stats</a></nav></header><main>{body}</main></body></html>",
        esc(title)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn error_page(code: StatusCode, title: &str, message: &str) -> Response {
    let mut response = page(
        title,
        None,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/runs\">Back to the runs</a></p>",
            esc(title),
            esc(message)
        ),
    );
    *response.status_mut() = code;
    response
}

fn api_error(e: &ApiError) -> Response {
    let code = match e.kind {
        ErrorKind::Usage | ErrorKind::Input | ErrorKind::InProgress => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Store | ErrorKind::Config => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(code, "The operation failed", &e.message)
}

/// A time in RFC 3339; past the year 9999 (a damaged record), the number of ms itself, since
/// humantime cannot write it and `to_string` would panic.
fn time(ms: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    match write!(out, "{}", humantime::format_rfc3339_millis(at)) {
        Ok(()) => out,
        Err(_) => format!("{ms} ms after 1970"),
    }
}

fn status_span(status: RunStatus) -> String {
    format!(
        "<span class=\"status s-{0}\">{0}</span>",
        esc(status.as_str())
    )
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[derive(Debug, Default, Deserialize)]
struct RunsQuery {
    workflow: Option<String>,
    status: Option<String>,
    /// Text the run id contains.
    q: Option<String>,
    /// Seconds between refreshes; 0 turns it off.
    refresh: Option<u32>,
    /// Only runs created within this long, such as `1h` or `7d`.
    since: Option<String>,
}

async fn runs_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<RunsQuery>,
) -> Response {
    let workflow = query.workflow.clone().filter(|w| !w.is_empty());
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match RunStatus::ALL.iter().find(|st| st.as_str() == s) {
            Some(st) => Some(*st),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown status",
                    &format!(
                        "`{s}` is not a run status; one of: {}",
                        RunStatus::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            }
        },
    };
    let text = query.q.clone().unwrap_or_default();
    let since_text = query.since.clone().unwrap_or_default();
    let since = match since_text.trim() {
        "" => None,
        t => match humantime::parse_duration(t) {
            Ok(d) => Some(d),
            Err(e) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid window",
                    &format!("`{t}` is not a duration such as `1h` or `7d`: {e}"),
                )
            }
        },
    };
    let created_after = since.map_or(0, |d| {
        crate::store::now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let refresh = query.refresh.unwrap_or(5).min(3600);
    let opened = match open_store(&console.settings, Access::Read).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let listed = opened
        .operator
        .list(&RunFilter {
            status: None,
            workflow: workflow.clone(),
            limit: None,
        })
        .await;
    release(opened.server).await;
    let runs = match listed {
        Ok(runs) => runs,
        Err(e) => return api_error(&e),
    };
    let runs: Vec<RunRecord> = runs
        .into_iter()
        .filter(|r| r.created_at_ms >= created_after)
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut workflows: Vec<&str> = Vec::new();
    for r in &runs {
        *counts.entry(r.status.as_str()).or_default() += 1;
        if !workflows.contains(&r.workflow.as_str()) {
            workflows.push(&r.workflow);
        }
    }
    workflows.sort_unstable();
    let shown: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| text.is_empty() || r.id.as_str().contains(text.as_str()))
        .collect();

    let mut b = String::new();
    let _ = write!(b, "<h1>Runs</h1>");
    // Counts by status, each a link that filters by it
    let _ = write!(
        b,
        "<p class=\"counts\" id=\"counts\"><strong>{}</strong> runs:",
        runs.len()
    );
    for (s, n) in &counts {
        let mut href = format!("/runs?status={}", url_value(s));
        if let Some(w) = &workflow {
            let _ = write!(href, "&workflow={}", url_value(w));
        }
        let _ = write!(
            b,
            " <a href=\"{}\" data-status=\"{}\">{} <span class=\"n\">{n}</span></a>",
            esc(&href),
            esc(s),
            esc(s)
        );
    }
    let _ = write!(b, "</p>");
    // The filter form
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/runs\" role=\"search\"><label for=\"workflow\">Workflow</label><input id=\"workflow\" name=\"workflow\" list=\"workflows\" value=\"{}\"><datalist id=\"workflows\">",
        esc(workflow.as_deref().unwrap_or(""))
    );
    for w in &workflows {
        let _ = write!(b, "<option value=\"{}\">", esc(w));
    }
    let _ = write!(
        b,
        "</datalist> <label for=\"status\">Status</label><select id=\"status\" name=\"status\"><option value=\"\">any</option>"
    );
    for s in RunStatus::ALL {
        let _ = write!(
            b,
            "<option value=\"{0}\"{1}>{0}</option>",
            esc(s.as_str()),
            if status == Some(s) { " selected" } else { "" }
        );
    }
    let _ = write!(
        b,
        "</select> <label for=\"q\">Run id contains</label><input id=\"q\" name=\"q\" value=\"{}\"> <label for=\"since\">Created in the last</label><input id=\"since\" name=\"since\" size=\"6\" placeholder=\"7d\" value=\"{}\"> <label for=\"refresh\">Refresh (s, 0 = off)</label><input id=\"refresh\" name=\"refresh\" type=\"number\" min=\"0\" max=\"3600\" size=\"4\" value=\"{refresh}\"> <button type=\"submit\">Filter</button></form>",
        esc(&text),
        esc(&since_text)
    );
    if shown.is_empty() {
        let _ = write!(b, "<p>No runs match.</p>");
    } else {
        let _ = write!(
            b,
            "<table id=\"runs\"><thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Workflow</th><th scope=\"col\">Status</th><th scope=\"col\">Created</th><th scope=\"col\">Updated</th><th scope=\"col\">Error</th></tr></thead><tbody>"
        );
        for r in shown.iter().take(RUNS_SHOWN) {
            let _ = write!(
                b,
                "<tr><td><a href=\"/run?id={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
                esc(&url_value(r.id.as_str())),
                esc(r.id.as_str()),
                esc(&r.workflow),
                status_span(r.status),
                esc(&time(r.created_at_ms)),
                esc(&time(r.updated_at_ms)),
                esc(r.error.as_deref().unwrap_or(""))
            );
        }
        let _ = write!(b, "</tbody></table>");
        if shown.len() > RUNS_SHOWN {
            let _ = write!(
                b,
                "<p>{} more runs match; narrow the filter to see them.</p>",
                shown.len() - RUNS_SHOWN
            );
        }
    }
    page("Runs", Some(refresh), &b)
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    id: String,
    refresh: Option<u32>,
}

fn parse_id(id: &str) -> Result<RunId, String> {
    RunId::new(id).map_err(|e| format!("not a run id: {e}"))
}

fn invalid_id(message: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Invalid run id", message)
}

async fn run_page(State(console): State<Arc<Console>>, Query(query): Query<RunQuery>) -> Response {
    let id = match parse_id(&query.id) {
        Ok(id) => id,
        Err(m) => return invalid_id(&m),
    };
    let opened = match open_store(&console.settings, Access::Read).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let shown = opened.operator.show(&id).await;
    release(opened.server).await;
    let view = match shown {
        Ok(view) => view,
        Err(e) => return api_error(&e),
    };
    let run = view.run;
    let mut steps = view.steps;
    timeline_order(&mut steps);
    let next = next_steps(&console.app, &run, &steps);
    let failed_units = steps
        .iter()
        .filter(|s| s.id.name == UNIT_STEP && s.status == StepStatus::Failed)
        .count();

    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Run <code id=\"run-id\">{}</code></h1><dl><dt>Workflow</dt><dd>{}</dd><dt>Status</dt><dd id=\"status\">{}</dd>",
        esc(run.id.as_str()),
        esc(&run.workflow),
        status_span(run.status)
    );
    let trace = match &console.settings.ui.trace_url {
        Some(template) => format!(
            "<a href=\"{}\">{}</a>",
            esc(&template.replace("{trace_id}", &url_value(&run.trace_id))),
            esc(&run.trace_id)
        ),
        None => format!("<code>{}</code>", esc(&run.trace_id)),
    };
    let _ = write!(
        b,
        "<dt>Trace id</dt><dd>{trace}</dd><dt>Created</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd><dt>Executions</dt><dd>{}</dd>",
        esc(&time(run.created_at_ms)),
        esc(&time(run.updated_at_ms)),
        run.executions
    );
    if let Some(e) = &run.error {
        let _ = write!(
            b,
            "<dt>Error</dt><dd class=\"error\" id=\"run-error\">{}</dd>",
            esc(e)
        );
    }
    if let Some(a) = &run.attention {
        let _ = write!(b, "<dt>Attention</dt><dd>{}</dd>", esc(&a.reason));
    }
    if view.cancel_requested {
        let _ = write!(
            b,
            "<dt>Cancel</dt><dd>requested; the run stops at its next step boundary</dd>"
        );
    }
    if let Some(q) = &view.queue {
        let _ = write!(
            b,
            "<dt>Queue</dt><dd>{} (priority {}), position {}, {} in flight: {}</dd>",
            esc(&q.name),
            q.priority,
            q.position,
            q.in_flight,
            esc(&q.waiting)
        );
    }
    let _ = write!(b, "</dl>");

    // The actions this run allows
    let id_value = esc(&url_value(run.id.as_str()));
    let mut actions = Vec::new();
    if !run.status.is_finished() || run.status == RunStatus::Paused {
        actions.push(("cancel", "Cancel"));
    }
    let live = run.owner.as_ref().is_some_and(|o| o.is_live_process());
    match run.status {
        RunStatus::Failed if failed_units > 0 => actions.push(("resume", "Retry failed units")),
        RunStatus::NeedsAttention if run.attention.is_some() => {
            actions.push(("resolve", "Resolve the step in doubt"));
            actions.push(("resume", "Resume"));
        }
        RunStatus::Failed | RunStatus::NeedsAttention => actions.push(("resume", "Resume")),
        RunStatus::Running | RunStatus::Sleeping if !live => actions.push(("resume", "Resume")),
        _ => {}
    }
    if !actions.is_empty() {
        let _ = write!(b, "<p class=\"actions\">");
        for (action, label) in actions {
            let _ = write!(
                b,
                "<a class=\"action\" id=\"action-{action}\" href=\"/run/{action}?id={id_value}\">{label}</a> "
            );
        }
        let _ = write!(b, "</p>");
    }

    let _ = write!(b, "<h2>Timeline</h2>");
    timeline(&mut b, &run, &steps);
    if failed_units > 0 {
        let _ = write!(
            b,
            "<h3>Failed units ({failed_units})</h3><ul id=\"failed-units\">"
        );
        for s in steps
            .iter()
            .filter(|s| s.id.name == UNIT_STEP && s.status == StepStatus::Failed)
            .take(FAILED_UNITS_SHOWN)
        {
            let _ = write!(
                b,
                "<li><code>{}</code>: <span class=\"error\">{}</span></li>",
                esc(&s.id.key),
                esc(s.error.as_deref().unwrap_or(""))
            );
        }
        let _ = write!(b, "</ul>");
        if failed_units > FAILED_UNITS_SHOWN {
            let _ = write!(
                b,
                "<p>and {} more (`runs show --output json` lists them)</p>",
                failed_units - FAILED_UNITS_SHOWN
            );
        }
    }
    if !next.is_empty() {
        let _ = write!(b, "<h2>Next</h2><ul class=\"next\" id=\"next\">");
        for line in &next {
            let _ = write!(b, "<li>next: {}</li>", esc(line));
        }
        let _ = write!(b, "</ul>");
    }
    let _ = write!(
        b,
        "<h2>Input</h2><pre id=\"input\">{}</pre>",
        esc(&pretty(&run.input))
    );
    if let Some(output) = &run.output {
        let _ = write!(
            b,
            "<h2>Output</h2><pre id=\"output\">{}</pre>",
            esc(&pretty(output))
        );
    }
    let refresh = if run.status.is_finished() {
        None
    } else {
        Some(query.refresh.unwrap_or(2).min(3600))
    };
    page(&format!("Run {}", run.id), refresh, &b)
}

/// One row of the timeline: a step, or an aggregate of the steps inside units.
struct Row {
    label: String,
    start: u64,
    end: u64,
    /// `succeeded`, `failed`, `backoff` or `running`: the bar's class and colour.
    state: &'static str,
    detail: String,
    /// Shown after the duration: retries (`3 attempts`), a backoff.
    note: String,
}

fn state_of(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Backoff => "backoff",
        StepStatus::Started => "running",
    }
}

/// The rows: each step outside units, then per step name inside units one aggregated row (a
/// 10,000-unit run draws a handful of bars).
fn rows(steps: &[StepRecord], now: u64) -> (Vec<Row>, usize) {
    let unit_keys: HashSet<&str> = steps
        .iter()
        .filter(|s| s.id.name == UNIT_STEP)
        .map(|s| s.id.key.as_str())
        .collect();
    // A step keyed by its own idempotency key inside a unit does not carry the unit's key:
    // a step name with more records than PER_NAME is aggregated like the steps of units
    let mut per_name: std::collections::HashMap<&str, usize> = Default::default();
    for s in steps {
        *per_name.entry(s.id.name.as_str()).or_default() += 1;
    }
    let in_unit = |s: &StepRecord| {
        s.id.name == UNIT_STEP
            || per_name
                .get(s.id.name.as_str())
                .is_some_and(|n| *n > PER_NAME)
            || s.id
                .key
                .split_once('/')
                .is_some_and(|(unit, _)| unit_keys.contains(unit))
    };
    let end_of = |s: &StepRecord| match s.status {
        StepStatus::Backoff => s.next_attempt_at_ms.unwrap_or(now).max(s.started_at_ms),
        _ => s.finished_at_ms.unwrap_or(now).max(s.started_at_ms),
    };
    let mut rows = Vec::new();
    let mut hidden = 0;
    for s in steps.iter().filter(|s| !in_unit(s)) {
        if rows.len() >= STEP_ROWS {
            hidden += 1;
            continue;
        }
        // The step's own name (not its module path) and the start of its key; both whole in
        // the bar's title
        let short = s.id.name.rsplit("::").next().unwrap_or(&s.id.name);
        let mut label = short.to_owned();
        if !s.id.key.is_empty() {
            let key: String = s.id.key.chars().take(12).collect();
            let more = if key.len() < s.id.key.len() {
                "…"
            } else {
                ""
            };
            let _ = write!(label, " [{key}{more}]");
        }
        if s.id.occurrence > 0 {
            let _ = write!(label, " #{}", s.id.occurrence);
        }
        let mut detail = format!(
            "{} [{}] #{}: {}, attempt {}",
            s.id.name,
            s.id.key,
            s.id.occurrence,
            state_of(s.status),
            s.attempt
        );
        if let Some(e) = &s.error {
            let _ = write!(detail, ", error: {e}");
        }
        if let (StepStatus::Backoff, Some(at)) = (s.status, s.next_attempt_at_ms) {
            let _ = write!(detail, ", next attempt at {}", time(at));
        }
        rows.push(Row {
            label,
            start: s.started_at_ms,
            end: end_of(s),
            state: state_of(s.status),
            detail,
            note: match (s.status, s.attempt) {
                (StepStatus::Backoff, n) => format!(" · attempt {n} failed, backing off"),
                (_, n) if n > 1 => format!(" · {n} attempts"),
                _ => String::new(),
            },
        });
    }
    // Steps in units, by name (the units themselves under `unit`)
    struct Group {
        start: u64,
        end: u64,
        counts: BTreeMap<&'static str, usize>,
        attempts: u64,
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for s in steps.iter().filter(|s| in_unit(s)) {
        let g = groups.entry(s.id.name.as_str()).or_insert(Group {
            start: u64::MAX,
            end: 0,
            counts: BTreeMap::new(),
            attempts: 0,
        });
        g.start = g.start.min(s.started_at_ms);
        g.end = g.end.max(end_of(s));
        *g.counts.entry(state_of(s.status)).or_default() += 1;
        g.attempts += u64::from(s.attempt);
    }
    let mut grouped: Vec<(&str, Group)> = groups.into_iter().collect();
    grouped.sort_by_key(|(name, g)| (*name != UNIT_STEP, g.start));
    for (name, g) in grouped {
        let total: usize = g.counts.values().sum();
        let state = ["failed", "backoff", "running", "succeeded"]
            .into_iter()
            .find(|st| g.counts.contains_key(st))
            .unwrap_or("succeeded");
        let short = name.rsplit("::").next().unwrap_or(name);
        let label = if name == UNIT_STEP {
            format!("units ({total})")
        } else {
            format!("{short} ×{total}")
        };
        let counts: Vec<String> = g.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        rows.push(Row {
            note: if g.attempts > total as u64 {
                format!(" · {} retries", g.attempts - total as u64)
            } else {
                String::new()
            },
            detail: format!(
                "{} ({total}): {}, {} attempts",
                if name == UNIT_STEP { "units" } else { name },
                counts.join(", "),
                g.attempts
            ),
            label,
            start: g.start,
            end: g.end,
            state,
        });
    }
    (rows, hidden)
}

/// Draws the timeline as inline SVG: one bar per row on a shared time axis.
fn timeline(b: &mut String, run: &RunRecord, steps: &[StepRecord]) {
    let now = crate::store::now_ms();
    let (rows, hidden) = rows(steps, now);
    if rows.is_empty() {
        let _ = write!(b, "<p>No steps yet.</p>");
        return;
    }
    let t0 = rows
        .iter()
        .map(|r| r.start)
        .min()
        .unwrap_or(run.created_at_ms)
        .min(run.created_at_ms);
    let t1 = rows
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(t0)
        .max(if run.status.is_finished() {
            run.updated_at_ms
        } else {
            now
        })
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    const LABEL: f64 = 260.0;
    const PLOT: f64 = 640.0;
    const ROW: f64 = 22.0;
    let height = ROW * rows.len() as f64 + 24.0;
    let _ = write!(
        b,
        "<svg id=\"timeline\" role=\"img\" aria-label=\"Step timeline\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" xmlns=\"http://www.w3.org/2000/svg\" style=\"max-width:100%;font:12px sans-serif\">",
        LABEL + PLOT + 100.0,
        LABEL + PLOT + 100.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = ROW * i as f64;
        let x = LABEL + PLOT * (r.start - t0) as f64 / span;
        let w = (PLOT * (r.end.saturating_sub(r.start)) as f64 / span).max(2.0);
        let fill = match r.state {
            "succeeded" => "#2e7d32",
            "failed" => "#c62828",
            "backoff" => "#ef6c00",
            _ => "#1565c0",
        };
        let label: String = if r.label.chars().count() > 38 {
            r.label.chars().take(37).chain(['…']).collect()
        } else {
            r.label.clone()
        };
        let _ = write!(
            b,
            "<g><title>{}</title><text x=\"0\" y=\"{}\">{}</text><rect class=\"bar {}\" x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{}\">{} ms{}</text></g>",
            esc(&r.detail),
            y + 15.0,
            esc(&label),
            r.state,
            y + 3.0,
            ROW - 6.0,
            x + w + 4.0,
            y + 15.0,
            r.end.saturating_sub(r.start),
            esc(&r.note)
        );
    }
    let axis = ROW * rows.len() as f64 + 16.0;
    let _ = write!(
        b,
        "<text x=\"{LABEL}\" y=\"{axis}\">0 ms</text><text x=\"{}\" y=\"{axis}\" text-anchor=\"end\">{} ms</text></svg>",
        LABEL + PLOT,
        t1 - t0
    );
    if hidden > 0 {
        let _ = write!(b, "<p>{hidden} more steps are not drawn.</p>");
    }
    // The same as a table, for screen readers and copying
    let _ = write!(
        b,
        "<details><summary>Steps as a table</summary><table id=\"steps\"><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">State</th><th scope=\"col\">Duration</th><th scope=\"col\">Detail</th></tr></thead><tbody>"
    );
    for r in &rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            esc(&r.label),
            r.state,
            r.end.saturating_sub(r.start),
            esc(&r.detail)
        );
    }
    let _ = write!(b, "</tbody></table></details>");
}

#[derive(Debug, Deserialize)]
struct ActionQuery {
    id: String,
}

fn action_label(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        "cancel" => Some((
            "Cancel",
            "The run stops at its next step boundary; its checkpoints stay.",
        )),
        "resume" => Some((
            "Resume",
            "Completed steps replay from their checkpoints; failed and unfinished steps (and units) execute again.",
        )),
        _ => None,
    }
}

async fn confirm_page(
    axum::extract::Path(action): axum::extract::Path<String>,
    Query(query): Query<ActionQuery>,
) -> Response {
    let Some((label, what)) = action_label(&action) else {
        return error_page(StatusCode::NOT_FOUND, "Unknown action", "No such action.");
    };
    let id = match parse_id(&query.id) {
        Ok(id) => id,
        Err(m) => return invalid_id(&m),
    };
    let body = format!(
        "<h1>{label} run <code>{0}</code>?</h1><p>{what}</p><form method=\"post\" action=\"/run/{action}\"><input type=\"hidden\" name=\"id\" value=\"{0}\"><button type=\"submit\" class=\"danger\" id=\"confirm\">{label}</button> <a href=\"/run?id={1}\">Back</a></form>",
        esc(id.as_str()),
        esc(&url_value(id.as_str())),
        action = esc(&action),
    );
    page(&format!("{label} {id}"), None, &body)
}

async fn act(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(action): axum::extract::Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionQuery>,
) -> Response {
    if action_label(&action).is_none() {
        return error_page(StatusCode::NOT_FOUND, "Unknown action", "No such action.");
    }
    let id = match parse_id(&form.id) {
        Ok(id) => id,
        Err(m) => return invalid_id(&m),
    };
    let who = if console.token.is_some() {
        let how = if session_cookie(&headers).is_some() {
            "signed in"
        } else {
            "token holder"
        };
        format!("{how} at {peer}")
    } else {
        format!("{peer}")
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let access = if action == "cancel" {
        Access::Write
    } else {
        Access::Execute
    };
    let opened = match open_store(&console.settings, access).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let result = match action.as_str() {
        "cancel" => {
            let r = opened.operator.cancel(&id).await.map(|_| ());
            release(opened.server).await;
            r
        }
        _ => match opened.operator.resume(&id, None).await {
            Ok(started) => {
                // With no owner the run executes in this process; the store is released
                // when it ends
                let server = opened.server;
                tokio::spawn(async move {
                    if let Started::Here(handle) = started {
                        let _ = handle.outcome().await;
                    }
                    release(server).await;
                });
                Ok(())
            }
            Err(e) => {
                release(opened.server).await;
                Err(e)
            }
        },
    };
    match &result {
        Ok(()) => {
            tracing::info!(action = %action, run = %id, who = %who, user_agent = %agent, "web console action")
        }
        Err(e) => {
            tracing::warn!(action = %action, run = %id, who = %who, user_agent = %agent, error = %e.message, "web console action failed")
        }
    }
    match result {
        Ok(()) => Redirect::to(&format!("/run?id={}", url_value(id.as_str()))).into_response(),
        Err(e) => api_error(&e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_past_year_9999_are_written_as_numbers() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            super::esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(super::url_value("a b/ü&"), "a%20b%2F%C3%BC%26");
    }
}

#[derive(Debug, Default, Deserialize)]
struct StatsPageQuery {
    workflow: Option<String>,
    /// How far back the window reaches, such as `24h` or `7d`.
    since: Option<String>,
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn ms(value: Option<u64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v} ms"))
}

/// One row of figures, with a bar of its p95 against the page's longest.
fn figures_row(b: &mut String, name: &str, f: &crate::console::api::stats::Figures, max_p95: u64) {
    let errors: Vec<String> = f.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let width = f
        .p95_ms
        .map_or(0.0, |p| 200.0 * p as f64 / max_p95.max(1) as f64);
    let _ = write!(
        b,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><svg width=\"204\" height=\"12\" aria-hidden=\"true\"><rect class=\"p95\" x=\"0\" y=\"1\" width=\"{width:.1}\" height=\"10\" fill=\"#1565c0\"/></svg></td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
        esc(name),
        f.count,
        percent(f.success_rate()),
        ms(f.p50_ms),
        ms(f.p95_ms),
        ms(f.p99_ms),
        f.retries,
        percent(f.error_rate()),
        esc(&errors.join(", "))
    );
}

async fn stats_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<StatsPageQuery>,
) -> Response {
    let since_text = query
        .since
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "24h".to_owned());
    let since = match humantime::parse_duration(&since_text) {
        Ok(d) => d,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid window",
                &format!("`{since_text}` is not a duration such as `24h` or `7d`: {e}"),
            )
        }
    };
    let workflow = query.workflow.clone().filter(|w| !w.is_empty());
    let now = crate::store::now_ms();
    let stats_query = crate::console::api::stats::StatsQuery {
        from_ms: Some(now.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))),
        to_ms: None,
        workflow: workflow.clone(),
        app_version: None,
        rollout: None,
    };
    let opened = match open_store(&console.settings, Access::Read).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let computed = opened.operator.stats(&stats_query).await;
    release(opened.server).await;
    let stats = match computed {
        Ok(stats) => stats,
        Err(e) => return api_error(&e),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Stats</h1><form method=\"get\" action=\"/stats\"><label for=\"workflow\">Workflow</label><input id=\"workflow\" name=\"workflow\" value=\"{}\"> <label for=\"since\">Runs created in the last</label><input id=\"since\" name=\"since\" size=\"6\" value=\"{}\"> <button type=\"submit\">Show</button></form><p>{} runs and {} steps read. The bar is each row's p95 against the longest on the page; <code>stats --compare</code> gives a before and after.</p>",
        esc(workflow.as_deref().unwrap_or("")),
        esc(&since_text),
        stats.runs_read,
        stats.steps_read
    );
    if stats.workflows.is_empty() {
        let _ = write!(b, "<p>No runs in this window.</p>");
    }
    let max_p95 = stats
        .workflows
        .iter()
        .flat_map(|w| std::iter::once(&w.runs).chain(w.steps.values()))
        .filter_map(|f| f.p95_ms)
        .max()
        .unwrap_or(1);
    for w in &stats.workflows {
        let _ = write!(
            b,
            "<h2>{}</h2><table class=\"stats\"><thead><tr><th scope=\"col\">Runs / step</th><th scope=\"col\">Count</th><th scope=\"col\">Success</th><th scope=\"col\">p50</th><th scope=\"col\">p95</th><th scope=\"col\">p99</th><th scope=\"col\">p95 bar</th><th scope=\"col\">Retries</th><th scope=\"col\">Error rate</th><th scope=\"col\">Errors</th></tr></thead><tbody>",
            esc(&w.workflow)
        );
        figures_row(&mut b, "runs", &w.runs, max_p95);
        for (step, f) in &w.steps {
            figures_row(&mut b, step, f, max_p95);
        }
        let _ = write!(b, "</tbody></table>");
    }
    page("Stats", None, &b)
}

/// The step in doubt of a run that needs attention, with how it was called.
async fn attention_of(console: &Console, id: &RunId) -> Result<crate::store::Attention, Response> {
    let opened = open_store(&console.settings, Access::Read)
        .await
        .map_err(|e| api_error(&e))?;
    let shown = opened.operator.show(id).await;
    release(opened.server).await;
    let view = shown.map_err(|e| api_error(&e))?;
    match (view.run.status, view.run.attention) {
        (RunStatus::NeedsAttention, Some(a)) => Ok(a),
        (status, _) => Err(error_page(
            StatusCode::BAD_REQUEST,
            "Nothing to resolve",
            &format!("run {id} is {status}: only a run that needs attention has a step in doubt"),
        )),
    }
}

async fn resolve_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<ActionQuery>,
) -> Response {
    let id = match parse_id(&query.id) {
        Ok(id) => id,
        Err(m) => return invalid_id(&m),
    };
    let attention = match attention_of(&console, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let args = attention
        .args
        .as_ref()
        .map(|a| {
            format!(
                "<h2>Its call</h2><pre id=\"args\">{}</pre>",
                esc(&pretty(a))
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Resolve step <code>{step}</code> of run <code>{id}</code></h1><p>{reason}</p>{args}<p>Check whether its effect happened, then say so. The run stays as it is until it is resumed.</p><form method=\"post\" action=\"/run/resolve\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><input type=\"hidden\" name=\"settle\" value=\"done\"><h2>It happened</h2><p><label for=\"output\">The step&#39;s output, as JSON</label></p><textarea id=\"output\" name=\"output\" rows=\"4\" cols=\"60\">null</textarea><p><button type=\"submit\" id=\"confirm-done\">Mark it done</button></p></form><form method=\"post\" action=\"/run/resolve\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><input type=\"hidden\" name=\"settle\" value=\"rerun\"><h2>It did not happen</h2><p><button type=\"submit\" class=\"danger\" id=\"confirm-rerun\">Run it again on resume</button></p></form><p><a href=\"/run?id={href}\">Back</a></p>",
        step = esc(&attention.step.to_string()),
        id = esc(id.as_str()),
        reason = esc(&attention.reason),
        href = esc(&url_value(id.as_str())),
    );
    page(&format!("Resolve {id}"), None, &body)
}

#[derive(Debug, Deserialize)]
struct ResolveForm {
    id: String,
    settle: String,
    output: Option<String>,
}

async fn resolve(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<ResolveForm>,
) -> Response {
    let id = match parse_id(&form.id) {
        Ok(id) => id,
        Err(m) => return invalid_id(&m),
    };
    let settle = match form.settle.as_str() {
        "rerun" => crate::console::api::Settle::Rerun,
        "done" => match serde_json::from_str(form.output.as_deref().unwrap_or("null")) {
            Ok(v) => crate::console::api::Settle::Done(v),
            Err(e) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid output",
                    &format!("the step's output is not JSON: {e}"),
                )
            }
        },
        other => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid settlement",
                &format!("`{other}` is neither `done` nor `rerun`"),
            )
        }
    };
    let attention = match attention_of(&console, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let opened = match open_store(&console.settings, Access::Write).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let result = opened.operator.resolve(&id, &attention.step, settle).await;
    release(opened.server).await;
    match &result {
        Ok(()) => {
            tracing::info!(action = "resolve", settle = %form.settle, run = %id, step = %attention.step, who = %peer, "web console action")
        }
        Err(e) => {
            tracing::warn!(action = "resolve", settle = %form.settle, run = %id, step = %attention.step, who = %peer, error = %e.message, "web console action failed")
        }
    }
    match result {
        Ok(()) => Redirect::to(&format!("/run?id={}", url_value(id.as_str()))).into_response(),
        Err(e) => api_error(&e),
    }
}
