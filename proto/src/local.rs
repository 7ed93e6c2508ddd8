//! How a client on the device reaches the sidecar's local API (the `entitle` CLI, and
//! packet servers that `Attach`): at `unix:PATH`, the sidecar's Unix socket, guarded by its
//! file permissions (mode 0660, the operator's group); or at `http://host:port` when the
//! sidecar also listens on TCP, where every call carries `authorization: Bearer
//! <credential>` (the sidecar's `api.credential` file).
//!
//! [`LocalEndpoint`] turns an address and an optional [`Credential`] into a
//! [`SidecarChannel`], and a failure to connect into one sentence ([`ConnectError`]).
//!
//! ```
//! use entitle_proto::local::{DEFAULT_ADDRESS, LocalEndpoint, SidecarAddress};
//!
//! assert_eq!(
//!     SidecarAddress::parse(DEFAULT_ADDRESS).unwrap(),
//!     SidecarAddress::Unix("/var/lib/entitled/entitled.sock".into())
//! );
//! // Without a scheme an address is TCP.
//! let tcp = SidecarAddress::parse("127.0.0.1:7070").unwrap();
//! assert_eq!(tcp.to_string(), "http://127.0.0.1:7070");
//! # async fn connect() -> Result<(), entitle_proto::local::ConnectError> {
//! let endpoint = LocalEndpoint::new(DEFAULT_ADDRESS, None).expect("an address");
//! let channel = endpoint.connect().await?; // "no sidecar at unix:... (is entitled running?)"
//! let client = entitle_proto::pb::sidecar_client::SidecarClient::new(channel);
//! # let _ = client; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::codegen::http::Uri;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The socket of an `entitled` whose `data_dir` is `/var/lib/entitled`, the data directory
/// its documentation names: `<data_dir>/entitled.sock`.
pub const DEFAULT_SOCKET: &str = "/var/lib/entitled/entitled.sock";

/// [`DEFAULT_SOCKET`] as an address: where clients look unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "unix:/var/lib/entitled/entitled.sock";

/// The name of the sidecar's TCP credential file in its data directory.
pub const CREDENTIAL_FILE: &str = "api.credential";

/// Where the sidecar's local API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SidecarAddress {
    /// `unix:PATH`: the sidecar's Unix socket.
    Unix(PathBuf),
    /// `http://host:port` (or `https://`): the sidecar's TCP listener.
    Tcp(String),
}

impl SidecarAddress {
    /// Parses `unix:PATH`, `http://...`, `https://...`, or `host:port` (taken as `http://`).
    pub fn parse(address: &str) -> Result<Self, ConnectError> {
        let bad = |reason: &str| ConnectError::BadAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = address.strip_prefix("unix:") {
            // `unix:///run/x.sock` is the URI form of the same path.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("unix: needs the socket's path"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        match url.split_once("://") {
            Some(("http" | "https", _)) => {}
            _ => return Err(bad("use unix:PATH or http://host:port")),
        }
        Endpoint::from_shared(url.clone()).map_err(|e| bad(&deepest_cause(&e)))?;
        Ok(Self::Tcp(url))
    }
}

impl fmt::Display for SidecarAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(url) => f.write_str(url),
        }
    }
}

/// The bearer credential of the sidecar's TCP listener. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// A credential from its text (surrounding whitespace is not part of it).
    pub fn new(text: &str) -> Self {
        Self(text.trim().to_owned())
    }

    /// Reads a credential file, refusing one that others can read (see
    /// [`crate::signing::read_secret`]).
    pub fn read(path: &Path) -> Result<Self, ConnectError> {
        let unreadable = |reason: String| ConnectError::Credential {
            path: path.to_owned(),
            reason,
        };
        let bytes = crate::signing::read_secret(path).map_err(|e| unreadable(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| unreadable("it is not text".into()))?;
        let credential = Self::new(&text);
        if credential.0.is_empty() {
            return Err(unreadable("it is empty".into()));
        }
        Ok(credential)
    }

    /// The credential's text, to compare or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// Adds `authorization: Bearer <credential>` to every call, when there is a credential.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(..)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the sidecar, with the credential (if any) added to each call.
pub type SidecarChannel = InterceptedService<Channel, Bearer>;

/// Why no channel to the sidecar was made. Each is one sentence for the operator.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// The address is neither `unix:PATH` nor an HTTP URL.
    #[error("`{address}` is not a sidecar address: {reason}")]
    BadAddress {
        /// The address given.
        address: String,
        /// Why it is not one.
        reason: String,
    },
    /// The credential file does not read.
    #[error("cannot use the sidecar credential {}: {reason}", path.display())]
    Credential {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No socket at the path, or nothing listening on it (a stale socket file).
    #[error("no sidecar at unix:{} (is entitled running?)", .0.display())]
    NoSidecar(PathBuf),
    /// The socket is there but its permissions keep this user out.
    #[error("permission denied on {}: the operator must be in the socket's group", .0.display())]
    PermissionDenied(PathBuf),
    /// Another failure to connect to the socket.
    #[error("cannot connect to unix:{}: {reason}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The system's reason.
        reason: String,
    },
    /// No connection to the TCP address.
    #[error("cannot reach the sidecar at {address}: {reason}")]
    Unreachable {
        /// The URL.
        address: String,
        /// The deepest cause, such as "Connection refused (os error 111)".
        reason: String,
    },
}

impl ConnectError {
    /// The socket error in `error`'s chain, if a failure to reach a Unix socket caused it
    /// (for a call whose connection was made again and failed).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<ConnectError>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    fn socket(path: &Path, e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                Self::NoSidecar(path.to_owned())
            }
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(path.to_owned()),
            _ => Self::Socket {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        }
    }
}

/// Connects to a Unix socket for tonic's connector.
#[derive(Clone, Debug)]
struct UnixConnector(PathBuf);

impl tonic::codegen::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            UnixStream::connect(&path)
                .await
                .map(TokioIo::new)
                .map_err(|e| ConnectError::socket(&path, &e))
        })
    }
}

/// The sidecar's local API at one address, with the credential for TCP.
#[derive(Clone, Debug)]
pub struct LocalEndpoint {
    address: SidecarAddress,
    endpoint: Endpoint,
    bearer: Bearer,
}

impl LocalEndpoint {
    /// The endpoint at `address` (see [`SidecarAddress::parse`]). The credential goes with
    /// every call on TCP; on the Unix socket it is not needed and not sent. Connects nothing.
    pub fn new(address: &str, credential: Option<&Credential>) -> Result<Self, ConnectError> {
        let address = SidecarAddress::parse(address)?;
        let bad = |reason: String| ConnectError::BadAddress {
            address: address.to_string(),
            reason,
        };
        let (endpoint, bearer) = match &address {
            // The URI only names the HTTP/2 authority; the connector opens the socket.
            SidecarAddress::Unix(_) => (Endpoint::from_static("http://localhost"), None),
            SidecarAddress::Tcp(url) => {
                let bearer = credential
                    .map(|c| {
                        format!("Bearer {}", c.expose())
                            .parse::<MetadataValue<Ascii>>()
                            .map_err(|_| {
                                bad("the credential holds characters a header cannot".into())
                            })
                    })
                    .transpose()?;
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| bad(deepest_cause(&e)))?
                    .tcp_nodelay(true);
                (endpoint, bearer)
            }
        };
        Ok(Self {
            address,
            endpoint,
            bearer: Bearer(bearer),
        })
    }

    /// The address, as `unix:PATH` or the URL.
    pub fn address(&self) -> &SidecarAddress {
        &self.address
    }

    /// How long a connection may take to open.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.endpoint = self.endpoint.connect_timeout(timeout);
        self
    }

    /// How long each call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.endpoint = self.endpoint.timeout(timeout);
        self
    }

    /// Connects now; the channel connects again by itself after it breaks.
    pub async fn connect(&self) -> Result<SidecarChannel, ConnectError> {
        let channel = match &self.address {
            SidecarAddress::Unix(path) => self
                .endpoint
                .connect_with_connector(UnixConnector(path.clone()))
                .await
                .map_err(|e| match ConnectError::find(&e) {
                    Some(found) => found.clone(),
                    None => ConnectError::Socket {
                        path: path.clone(),
                        reason: deepest_cause(&e),
                    },
                })?,
            SidecarAddress::Tcp(url) => {
                self.endpoint
                    .connect()
                    .await
                    .map_err(|e| ConnectError::Unreachable {
                        address: url.clone(),
                        reason: deepest_cause(&e),
                    })?
            }
        };
        Ok(InterceptedService::new(channel, self.bearer.clone()))
    }

    /// A channel that connects at its first call.
    pub fn connect_lazy(&self) -> SidecarChannel {
        let channel = match &self.address {
            SidecarAddress::Unix(path) => self
                .endpoint
                .connect_with_connector_lazy(UnixConnector(path.clone())),
            SidecarAddress::Tcp(_) => self.endpoint.connect_lazy(),
        };
        InterceptedService::new(channel, self.bearer.clone())
    }
}

/// The innermost error of the chain: the one that says what went wrong ("Connection
/// refused") rather than where ("transport error").
fn deepest_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut err = err;
    while let Some(source) = err.source() {
        err = source;
    }
    err.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            SidecarAddress::parse("unix:/run/e.sock").unwrap(),
            SidecarAddress::Unix("/run/e.sock".into())
        );
        assert_eq!(
            SidecarAddress::parse("unix:///run/e.sock").unwrap(),
            SidecarAddress::Unix("/run/e.sock".into())
        );
        assert_eq!(
            SidecarAddress::parse("unix:e.sock").unwrap(),
            SidecarAddress::Unix("e.sock".into())
        );
        assert_eq!(
            SidecarAddress::parse("https://sidecar.example:7070")
                .unwrap()
                .to_string(),
            "https://sidecar.example:7070"
        );
        for bad in ["unix:", "ftp://x", "http://bad host"] {
            let e = SidecarAddress::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("`{bad}` is not a sidecar address: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_credential_is_never_shown() {
        let credential = Credential::new(" s3cret\n");
        assert_eq!(credential.expose(), "s3cret");
        assert!(!format!("{credential:?}").contains("s3cret"));
        let endpoint = LocalEndpoint::new("http://127.0.0.1:1", Some(&credential)).unwrap();
        assert!(!format!("{endpoint:?}").contains("s3cret"));
    }

    #[test]
    fn the_bearer_goes_on_tcp_only() {
        let credential = Credential::new("abc");
        let mut tcp = LocalEndpoint::new("127.0.0.1:1", Some(&credential))
            .unwrap()
            .bearer;
        let request = tcp.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer abc"
        );
        let mut unix = LocalEndpoint::new("unix:/x", Some(&credential))
            .unwrap()
            .bearer;
        let request = unix.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[tokio::test]
    async fn a_missing_or_dead_socket_is_no_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let address = format!("unix:{}", path.display());
        let missing = LocalEndpoint::new(&address, None)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!("no sidecar at {address} (is entitled running?)")
        );
        // A socket file nothing listens on, as a crash leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let stale = LocalEndpoint::new(&address, None)
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert_eq!(stale, ConnectError::NoSidecar(path));
    }

    #[test]
    fn credential_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.credential");
        crate::signing::write_secret(&path, b"abc\n").unwrap();
        assert_eq!(Credential::read(&path).unwrap().expose(), "abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credential::read(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
        let empty = dir.path().join("empty");
        crate::signing::write_secret(&empty, b"\n").unwrap();
        let e = Credential::read(&empty).unwrap_err().to_string();
        assert!(e.ends_with("it is empty"), "{e}");
    }
}
