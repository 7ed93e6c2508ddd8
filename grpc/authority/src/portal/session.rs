//! Portal sessions: a random id in a cookie, held in memory, that expires; each with its
//! CSRF token and role.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;

/// How long a session lasts from its login.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The cookie's name.
const COOKIE: &str = "entitle_session";

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything the admin CLI may.
    Admin,
    /// See everything, change nothing.
    Viewer,
}

/// One logged-in operator.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether a form's token is this session's (compared in constant time).
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && presented
                .bytes()
                .zip(self.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The open sessions.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Opens a session for `role`; its id, for the cookie.
    pub(crate) fn open(&self, role: Role) -> String {
        let session = Session {
            id: random(),
            role,
            csrf: random(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let id = session.id.clone();
        let mut sessions = self.0.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session `id`, if any.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.0.lock();
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn close(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

/// 32 random bytes in hex.
fn random() -> String {
    // The system's randomness failing is not something a web page can answer around.
    #[allow(clippy::expect_used)]
    let bytes = entitle_proto::signing::random_bytes::<32>().expect("the system's random numbers");
    super::hex(&bytes)
}

/// The `Set-Cookie` value for session `id`. Secure: the portal is served over TLS only.
pub(crate) fn cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// A `Set-Cookie` value that removes the session cookie.
pub(crate) fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session id a request's cookies carry.
pub(crate) fn from_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}
