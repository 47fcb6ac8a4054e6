//! Signed-in sessions: an opaque random cookie naming a server-side record
//! (account, region, CSRF token, expiry). Sessions live in memory: a restart
//! signs everyone out, which loses nothing (the console holds no state).

use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "vpcd_console";
/// The cookie that carries the sign-in form's CSRF token before a session exists.
pub const SIGNIN_COOKIE: &str = "vpcd_console_signin";
/// How long a session lasts from sign-in (it does not slide).
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// A message shown once on the next page (the outcome of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
    /// A follow-up link (path, label), e.g. "Modify my route tables now".
    pub link: Option<(String, String)>,
}

/// What a session knows.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub access_key_id: String,
    pub region: String,
    pub csrf: String,
    pub expires: Instant,
    pub flash: Option<Flash>,
}

/// The signed-in viewer of one request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub sid: String,
    pub account: String,
    pub access_key_id: String,
    pub region: String,
    pub csrf: String,
    pub flash: Option<Flash>,
}

/// 32 random bytes, hex.
pub fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares two tokens in constant time (for equal lengths).
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value of a console cookie: HttpOnly, SameSite=Strict,
/// scoped to `/console`, expiring after `max_age` seconds (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// Every live session.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session and returns its id.
    pub fn start(&self, account: String, access_key_id: String, region: String) -> String {
        let sid = token();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(
            sid.clone(),
            Session {
                account,
                access_key_id,
                region,
                csrf: token(),
                expires: now + LIFETIME,
                flash: None,
            },
        );
        sid
    }

    /// The viewer of a request carrying this session cookie, taking its flash.
    pub fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let sid = cookie(headers, COOKIE)?;
        let mut map = self.lock();
        let s = map.get_mut(&sid)?;
        if s.expires <= Instant::now() {
            map.remove(&sid);
            return None;
        }
        Some(Viewer {
            account: s.account.clone(),
            access_key_id: s.access_key_id.clone(),
            region: s.region.clone(),
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
            sid,
        })
    }

    pub fn set_flash(&self, sid: &str, flash: Flash) {
        if let Some(s) = self.lock().get_mut(sid) {
            s.flash = Some(flash);
        }
    }

    pub fn set_region(&self, sid: &str, region: &str) {
        if let Some(s) = self.lock().get_mut(sid) {
            s.region = region.to_string();
        }
    }

    pub fn end(&self, sid: &str) {
        self.lock().remove(sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; vpcd_console_signin=x; vpcd_console=abc"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, SIGNIN_COOKIE).as_deref(), Some("x"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        let t = token();
        assert_eq!(t.len(), 64);
        assert!(same_token(&t, &t.clone()));
        assert!(!same_token(&t, &token()));
        assert!(!same_token("", ""));
        assert!(!same_token(&t, &t[1..]));
    }

    #[test]
    fn an_expired_session_is_gone() {
        let s = Sessions::default();
        let sid = s.start("111111111111".into(), "AK".into(), "us-east-1".into());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={sid}")).unwrap(),
        );
        assert_eq!(s.viewer(&h).unwrap().account, "111111111111");
        s.lock().get_mut(&sid).unwrap().expires = Instant::now();
        assert!(s.viewer(&h).is_none());
        assert!(s.lock().is_empty());
    }
}
