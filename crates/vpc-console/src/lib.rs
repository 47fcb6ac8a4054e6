//! The web console of vpcd, served under `/console` on the API's listener.
//!
//! Server-rendered HTML (maud, auto-escaping), no scripts. It decides no AWS
//! rule: pages read the published World through the same model lookups the
//! Describe actions use (`ops::vpc::get`, `World::scoped`,
//! `ops::peering::listed`, …), and every change is an EC2 action run through
//! [`vpc_api::App::dispatch`], the path a signed API request takes after
//! SigV4 (same handlers, same model operations, same group commit). See
//! `docs/console.md`.

pub mod form;
pub mod pages;
pub mod session;
pub mod topology;
pub mod view;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Form, Router};
use maud::html;
use session::{Flash, Sessions, Viewer};
use std::collections::HashMap;
use std::sync::Arc;
use vpc_api::server::RandomIds;
use vpc_api::{App, Params};
use vpc_model::region::Regions;
use vpc_model::{Ctx, Fault, World};

/// Sends real packets for "test connectivity" (`vpcd` gives one when its
/// data plane runs; the console itself runs nothing).
pub trait Prober: Send + Sync {
    /// Whether a packet from the instance `source` reaches `destination` (an
    /// instance, interface or address) over `protocol` (`icmp`, `tcp`,
    /// `udp`) and `port`, through the kernel. Err: why no probe could run
    /// (for the server's log; the page says only that none ran).
    fn probe(
        &self,
        world: &World,
        source: &str,
        destination: &str,
        protocol: &str,
        port: Option<u16>,
    ) -> Result<bool, String>;
}

/// The console's state: the API's app, the signed-in sessions and, with a
/// data plane, the prober.
pub struct Console {
    pub app: Arc<App>,
    pub sessions: Sessions,
    pub prober: Option<Arc<dyn Prober>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("app", &self.app)
            .field("probes", &self.prober.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) type Shared = Arc<Console>;

/// What a page handler is given besides the viewer: the path's ID (detail
/// pages) and the query string.
#[derive(Debug, Default)]
pub struct PageReq {
    pub id: String,
    pub q: HashMap<String, String>,
}

impl PageReq {
    /// A query parameter, empty when absent.
    pub fn q(&self, name: &str) -> &str {
        self.q.get(name).map_or("", String::as_str)
    }
}

impl Console {
    pub fn new(app: Arc<App>) -> Console {
        Console {
            app,
            sessions: Sessions::default(),
            prober: None,
        }
    }

    pub fn regions(&self) -> &Regions {
        &self.app.config.regions
    }

    /// Runs `f` on the published World as the viewer, in the viewer's region,
    /// after the same preparation a request gets (timers, default VPC).
    pub fn read<R>(&self, v: &Viewer, f: impl FnOnce(&World, &Ctx<'_>) -> R) -> Result<R, Fault> {
        self.app.prepare(&v.account, &v.region)?;
        let w = self.app.snapshot();
        let zones = self
            .regions()
            .get(&v.region)
            .map(|r| r.zones())
            .unwrap_or_default();
        let mut ids = RandomIds;
        let ctx = Ctx {
            account: v.account.clone(),
            region: v.region.clone(),
            now: self.app.now(),
            ids: &mut ids,
            limits: &self.app.config.limits,
            zones: &zones,
        };
        Ok(f(&w, &ctx))
    }

    /// Runs one EC2 action as the viewer, exactly as a signed API request
    /// would run it, and returns its XML body.
    pub fn call(&self, v: &Viewer, pairs: Vec<(String, String)>) -> Result<String, Fault> {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.app.dispatch(
            &v.account,
            &v.region,
            &Params::from_pairs(pairs),
            &request_id,
        )
    }

    /// A page, or the error page for a fault (404 for a resource the viewer cannot see).
    pub fn render(
        &self,
        v: &Viewer,
        active: &str,
        title: &str,
        body: Result<maud::Markup, Fault>,
    ) -> Response {
        match body {
            Ok(m) => view::html_response(
                StatusCode::OK,
                view::page(v, self.regions(), active, title, m),
            ),
            Err(f) => self.fault_page(v, active, &f),
        }
    }

    pub fn fault_page(&self, v: &Viewer, active: &str, f: &Fault) -> Response {
        let status = if f.code.contains("NotFound") || f.code.ends_with(".Malformed") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        let title = if status == StatusCode::NOT_FOUND {
            "Not found"
        } else {
            "Error"
        };
        view::html_response(
            status,
            view::page(
                v,
                self.regions(),
                active,
                title,
                html! { p.error { code { (f.code) } ": " (f.message) } },
            ),
        )
    }
}

/// The console's routes, all under `/console`, to be mounted beside the API.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, None)
}

/// [`router`] whose "test connectivity" also sends real packets through `prober`.
pub fn router_with(app: Arc<App>, prober: Option<Arc<dyn Prober>>) -> Router {
    let mut console = Console::new(app);
    console.prober = prober;
    let c: Shared = Arc::new(console);
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/static/console.css", get(css))
        .route("/console/signin", get(signin_form).post(signin))
        .route("/console/signout", post(signout))
        .route("/console/region", post(switch_region))
        .route("/console/do", post(run_action))
        .route("/console/vpcs", list(pages::network::vpcs))
        .route("/console/vpcs/{id}", detail(pages::network::vpc))
        .route("/console/subnets", list(pages::network::subnets))
        .route("/console/subnets/{id}", detail(pages::network::subnet))
        .route("/console/gateways", list(pages::network::gateways))
        .route("/console/route-tables", list(pages::routing::tables))
        .route("/console/route-tables/{id}", detail(pages::routing::table))
        .route("/console/security-groups", list(pages::filtering::groups))
        .route(
            "/console/security-groups/{id}",
            detail(pages::filtering::group),
        )
        .route("/console/network-acls", list(pages::filtering::acls))
        .route("/console/network-acls/{id}", detail(pages::filtering::acl))
        .route("/console/instances", list(pages::instances::list))
        .route("/console/instances/{id}", detail(pages::instances::detail))
        .route("/console/peering", list(pages::peering::list))
        .route("/console/peering/{id}", detail(pages::peering::detail))
        .route("/console/topology", list(topology::page))
        .route("/console/costs", list(pages::costs::page))
        .route("/console/flow-logs", list(pages::flow_logs::page))
        .route(
            "/console/reach",
            list(pages::reach::form_page).post(pages::reach::run),
        )
        .route("/console/reach/matrix", list(pages::reach::matrix))
        .route("/console/reach/{id}", detail(pages::reach::result))
        .route("/console/{*rest}", get(not_found))
        .with_state(c)
}

type PageFn = fn(&Console, &Viewer, &PageReq) -> Response;

/// Runs a page for a signed-in viewer off the async workers (a first visit
/// to a region writes its default VPC); anyone else goes to the sign-in page.
async fn serve_page(c: Shared, headers: HeaderMap, req: PageReq, f: PageFn) -> Response {
    let Some(v) = c.sessions.viewer(&headers) else {
        return to_signin();
    };
    tokio::task::spawn_blocking(move || f(&c, &v, &req))
        .await
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

fn list(f: PageFn) -> MethodRouter<Shared> {
    get(
        move |State(c): State<Shared>,
              headers: HeaderMap,
              Query(q): Query<HashMap<String, String>>| async move {
            serve_page(
                c,
                headers,
                PageReq {
                    id: String::new(),
                    q,
                },
                f,
            )
            .await
        },
    )
}

fn detail(f: PageFn) -> MethodRouter<Shared> {
    get(
        move |State(c): State<Shared>,
              headers: HeaderMap,
              Path(id): Path<String>,
              Query(q): Query<HashMap<String, String>>| async move {
            serve_page(c, headers, PageReq { id, q }, f).await
        },
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    view::harden((status, text).into_response())
}

pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    view::harden(r)
}

fn to_signin() -> Response {
    redirect("/console/signin")
}

async fn home(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if c.sessions.viewer(&headers).is_some() {
        redirect("/console/vpcs")
    } else {
        to_signin()
    }
}

async fn not_found(State(c): State<Shared>, headers: HeaderMap) -> Response {
    match c.sessions.viewer(&headers) {
        Some(v) => c.fault_page(
            &v,
            "",
            &Fault::new("NotFound", "There is no console page at this address."),
        ),
        None => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn css() -> Response {
    let mut r = view::CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

fn signin_page(c: &Console, token: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        main.signin {
            h1 { "Sign in to the vpcd console" }
            @if let Some(e) = error { div.flash.error role="alert" id="signin-error" { (e) } }
            form method="post" action="/console/signin" {
                input type="hidden" name="csrf" value=(token);
                label { "Access key ID" input name="access_key_id" autocomplete="username" required; }
                label { "Secret access key" input type="password" name="secret_access_key" autocomplete="current-password" required; }
                label { "Region"
                    select name="region" {
                        @for r in &c.regions().list { option value=(r.name) { (r.name) } }
                    }
                }
                button type="submit" { "Sign in" }
            }
            p.muted { "The same keys the aws CLI and SDKs sign requests with (" code { "vpcd account add" } ")." }
        }
    };
    let mut r = view::html_response(status, view::document("Sign in", body));
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(session::SIGNIN_COOKIE, token, 3600))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn signin_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if c.sessions.viewer(&headers).is_some() {
        return redirect("/console/vpcs");
    }
    signin_page(&c, &session::token(), None, StatusCode::OK)
}

async fn signin(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| f.get(k).map_or("", String::as_str).to_string();
    let expected = session::cookie(&headers, session::SIGNIN_COOKIE).unwrap_or_default();
    if !session::same_token(&expected, &field("csrf")) {
        return signin_page(
            &c,
            &session::token(),
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let (akid, secret) = (field("access_key_id"), field("secret_access_key"));
    let mut region = field("region");
    if c.regions().get(&region).is_none() {
        region = c
            .regions()
            .list
            .first()
            .map(|r| r.name.clone())
            .unwrap_or_default();
    }
    let app = c.app.clone();
    let akid2 = akid.clone();
    let account = tokio::task::spawn_blocking(move || app.account_for_secret(&akid2, &secret))
        .await
        .ok()
        .flatten();
    let Some(account) = account else {
        return signin_page(
            &c,
            &session::token(),
            Some("Sign-in failed: the access key ID or the secret access key is wrong."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let sid = c.sessions.start(account, akid, region);
    let mut r = redirect("/console/vpcs");
    let h = r.headers_mut();
    for cookie in [
        session::set_cookie(session::COOKIE, &sid, session::LIFETIME.as_secs()),
        session::set_cookie(session::SIGNIN_COOKIE, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The viewer of a state-changing request, if it carries the session's CSRF
/// token; else why it is refused (answered 403 by [`refused`]).
pub(crate) fn checked(
    c: &Console,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Viewer, &'static str> {
    let Some(v) = c.sessions.viewer(headers) else {
        return Err("not signed in");
    };
    let token = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, t)| t.as_str());
    if session::same_token(&v.csrf, token) {
        Ok(v)
    } else {
        Err("request refused: missing or wrong CSRF token")
    }
}

/// The answer to a refused state-changing request.
pub(crate) fn refused(why: &'static str) -> Response {
    plain(StatusCode::FORBIDDEN, why)
}

async fn signout(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let v = match checked(&c, &headers, &f) {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    c.sessions.end(&v.sid);
    let mut r = to_signin();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(session::COOKIE, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn switch_region(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let v = match checked(&c, &headers, &f) {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    let region = f
        .iter()
        .find(|(k, _)| k == "region")
        .map_or("", |(_, r)| r.as_str());
    if c.regions().get(region).is_some() {
        c.sessions.set_region(&v.sid, region);
    }
    redirect("/console/vpcs")
}

/// `POST /console/do`: one EC2 action from a console form (see [`form`]).
async fn run_action(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let v = match checked(&c, &headers, &f) {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    let request = match form::ActionForm::parse(&f) {
        Ok(r) => r,
        Err(message) => {
            c.sessions.set_flash(
                &v.sid,
                Flash {
                    ok: false,
                    text: message,
                    link: None,
                },
            );
            return redirect(&form::safe_next(
                f.iter().find(|(k, _)| k == "back").map(|(_, b)| b.as_str()),
            ));
        }
    };
    tokio::task::spawn_blocking(move || {
        let outcome = c.call(&v, request.params.clone());
        let (flash, to) = request.outcome(outcome);
        c.sessions.set_flash(&v.sid, flash);
        redirect(&to)
    })
    .await
    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}
