//! The sidecar's local API, where the `entitle` CLI and attached packet servers reach it:
//! the `Sidecar` service with gRPC health and reflection, on a Unix socket and, when
//! configured, on TCP with a bearer credential (see the configuration's
//! [local API](crate::RawConfig) section).
//!
//! - **The socket** is made in a private directory beside its path (mode 0700), given mode
//!   0660 and its group there, and only then renamed into place, so it is never reachable
//!   with wider permissions. A socket file nobody answers on (a crash left it) is replaced;
//!   one that answers is another sidecar's, and the start stops. A clean stop removes it.
//! - **TCP** refuses every call, health and reflection included, without
//!   `authorization: Bearer <credential>`; the credential is compared in constant time and
//!   never logged.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use entitle_proto::local::{CREDENTIAL_FILE, Credential};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, UnixListener};

use crate::config::{SidecarConfig, SocketGroup};
use crate::{Result, SidecarError};

/// The socket's mode: the sidecar's user and its group read and write (connect).
const SOCKET_MODE: u32 = 0o660;
/// How long a socket file may take to answer before it counts as another sidecar's.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The bound listeners of the local API, ready for [`crate::Sidecar::serve_local`].
///
/// ```no_run
/// # async fn run(config: entitle_sidecar::SidecarConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use entitle_sidecar::Sidecar;
///
/// let sidecar = Sidecar::start(config, None).await?;
/// let api = sidecar.bind_local_api().await?;
/// println!("entitled listening on {}", api.address());
/// sidecar.serve_local(api, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalApi {
    pub(crate) socket: SocketFile,
    pub(crate) unix: UnixListener,
    pub(crate) tcp: Option<(TcpListener, TcpGuard)>,
}

impl LocalApi {
    /// Binds the socket of `config` (and its TCP address with the credential, if any).
    pub async fn bind(config: &SidecarConfig) -> Result<Self> {
        let (unix, socket) = bind_socket(&config.socket, config.socket_group.as_ref()).await?;
        let tcp = match config.listen {
            None => None,
            Some(address) => {
                let guard = TcpGuard::open(&config.data_dir)?;
                let listener = TcpListener::bind(address).await.map_err(|e| {
                    SidecarError::Config(format!("cannot listen on {address}: {e}"))
                })?;
                Some((listener, guard))
            }
        };
        Ok(Self { socket, unix, tcp })
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket.path
    }

    /// The socket as an address for clients: `unix:PATH`.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.path.display())
    }

    /// The TCP address, if the API listens on TCP too.
    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

/// The socket file this sidecar made; removed on drop if it is still that one.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// Device and inode, to leave alone a file that replaced ours.
    identity: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes the socket at `path`: mode 0660, of `group`, replacing a stale one.
async fn bind_socket(
    path: &Path,
    group: Option<&SocketGroup>,
) -> Result<(UnixListener, SocketFile)> {
    let shown = path.display();
    let config = |what: String| SidecarError::Config(what);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| config(format!("cannot create {}: {e}", parent.display())))?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(config(format!("cannot look at {shown}: {e}"))),
        Ok(m) if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            return Err(config(format!(
                "{shown} exists and is not a socket: remove it, or choose another `socket`"
            )));
        }
        Ok(_) => {
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %shown, "replacing a stale socket (a previous start did not stop cleanly)");
                }
                Ok(Err(e)) => return Err(config(format!("cannot check the socket {shown}: {e}"))),
                Ok(Ok(_)) | Err(_) => {
                    return Err(config(format!("another entitled is listening on {shown}")));
                }
            }
        }
    }
    // Made where only this user can reach it, then moved into place finished.
    let suffix = entitle_proto::signing::random_bytes::<4>()
        .map_err(|e| SidecarError::Internal(format!("no random numbers: {e}")))?;
    let private = parent.join(format!(".entitled-{}", hex(&suffix)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| config(format!("cannot create {}: {e}", private.display())))?;
    let made = private.join("s");
    let bound = finish_socket(&made, path, group);
    let _ = std::fs::remove_file(&made);
    let _ = std::fs::remove_dir(&private);
    let listener = bound?;
    let m = std::fs::symlink_metadata(path)
        .map_err(|e| config(format!("cannot look at {shown}: {e}")))?;
    let socket = SocketFile {
        path: path.to_owned(),
        identity: (m.dev(), m.ino()),
    };
    warn_if_unreachable(&parent, group);
    listener
        .set_nonblocking(true)
        .map_err(|e| config(format!("cannot use the socket {shown}: {e}")))?;
    let listener = UnixListener::from_std(listener)
        .map_err(|e| config(format!("cannot use the socket {shown}: {e}")))?;
    Ok((listener, socket))
}

/// Binds `made`, sets its mode and group, and renames it to `path`.
fn finish_socket(
    made: &Path,
    path: &Path,
    group: Option<&SocketGroup>,
) -> Result<std::os::unix::net::UnixListener> {
    let config = |what: String| SidecarError::Config(what);
    let shown = path.display();
    let listener = std::os::unix::net::UnixListener::bind(made)
        .map_err(|e| config(format!("cannot listen on {shown}: {e}")))?;
    std::fs::set_permissions(made, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| config(format!("cannot set the mode of {shown}: {e}")))?;
    if let Some(group) = group {
        std::os::unix::fs::chown(made, None, Some(group.gid)).map_err(|e| {
            config(format!(
                "cannot give the socket {shown} to the group {}: {e} (entitled must run as root or as a member of that group)",
                group.name
            ))
        })?;
    }
    std::fs::rename(made, path).map_err(|e| config(format!("cannot create {shown}: {e}")))?;
    Ok(listener)
}

/// Warns when the socket's directory keeps its group out (no search permission).
fn warn_if_unreachable(parent: &Path, group: Option<&SocketGroup>) {
    let Ok(m) = std::fs::metadata(parent) else {
        return;
    };
    let mode = m.permissions().mode();
    let group_passes = match group {
        Some(g) if m.gid() == g.gid => mode & 0o010 != 0,
        _ => false,
    };
    if !group_passes && mode & 0o001 == 0 {
        tracing::warn!(
            directory = %parent.display(),
            mode = format!("{:o}", mode & 0o777),
            "the socket's directory cannot be searched by its group or others: only its owner can reach the socket"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What calls on TCP must present: the hash of the credential in the data directory.
#[derive(Clone)]
pub(crate) struct TcpGuard {
    hash: Arc<[u8; 32]>,
    file: Arc<PathBuf>,
}

impl std::fmt::Debug for TcpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpGuard")
            .field("file", &self.file)
            .finish()
    }
}

impl TcpGuard {
    /// Reads `<data_dir>/api.credential`, making it first if there is none.
    fn open(data_dir: &Path) -> Result<Self> {
        let file = data_dir.join(CREDENTIAL_FILE);
        if !file.exists() {
            let credential = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                entitle_proto::signing::random_bytes::<32>()
                    .map_err(|e| SidecarError::Internal(format!("no random numbers: {e}")))?,
            );
            match entitle_proto::signing::write_secret(&file, credential.as_bytes()) {
                Ok(()) => {
                    tracing::info!(file = %file.display(), "made the local API's TCP credential")
                }
                // Made by another start a moment ago: read that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(SidecarError::Config(format!(
                        "cannot write {}: {e}",
                        file.display()
                    )));
                }
            }
        }
        let credential =
            Credential::read(&file).map_err(|e| SidecarError::Config(e.to_string()))?;
        Ok(Self {
            hash: Arc::new(Sha256::digest(credential.expose().as_bytes()).into()),
            file: Arc::new(file),
        })
    }

    /// Whether `header` (the `authorization` metadata) carries the credential.
    fn allows(&self, header: &str) -> bool {
        let Some(presented) = header.strip_prefix("Bearer ") else {
            return false;
        };
        let presented = Sha256::digest(presented.trim().as_bytes());
        presented
            .iter()
            .zip(self.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Lets a call through only with the credential.
    pub(crate) fn check(
        &self,
        request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let header = request.metadata().get("authorization");
        let Some(header) = header else {
            tracing::warn!("local API call on TCP refused: no credential");
            return Err(tonic::Status::unauthenticated(format!(
                "calls to the sidecar on TCP need `authorization: Bearer <credential>`, the credential in {}",
                self.file.display()
            )));
        };
        if header.to_str().map_or(true, |h| !self.allows(h)) {
            tracing::warn!("local API call on TCP refused: wrong credential");
            return Err(tonic::Status::unauthenticated(format!(
                "the sidecar credential is wrong: use the one in {}",
                self.file.display()
            )));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_credential_is_made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let guard = TcpGuard::open(dir.path()).unwrap();
        let file = dir.path().join("api.credential");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        // 32 random bytes, base64url without padding.
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(guard.allows(&format!("Bearer {text}")));
        assert!(!guard.allows(&format!("Bearer {text}x")));
        assert!(!guard.allows(&text));
        assert!(!format!("{guard:?}").contains(&text));
        // A second start keeps it.
        TcpGuard::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }

    #[test]
    fn refusals_say_what_is_missing_and_never_the_credential() {
        let dir = tempfile::tempdir().unwrap();
        let guard = TcpGuard::open(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("api.credential")).unwrap();
        let none = guard.check(tonic::Request::new(())).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        assert!(
            none.message()
                .contains("need `authorization: Bearer <credential>`")
        );
        let mut wrong = tonic::Request::new(());
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        let wrong = guard.check(wrong).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(
            wrong
                .message()
                .starts_with("the sidecar credential is wrong")
        );
        assert!(!wrong.message().contains(&text));
        let mut right = tonic::Request::new(());
        right
            .metadata_mut()
            .insert("authorization", format!("Bearer {text}").parse().unwrap());
        assert!(guard.check(right).is_ok());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (live, file) = bind_socket(&path, None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let e = bind_socket(&path, None).await.unwrap_err().to_string();
        assert_eq!(
            e,
            format!("another entitled is listening on {}", path.display())
        );
        // Nothing of the private directory is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["e.sock"]);
        drop(live);
        drop(file);
        assert!(!path.exists(), "removed when dropped");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        std::fs::write(&path, b"data").unwrap();
        let e = bind_socket(&path, None).await.unwrap_err().to_string();
        assert!(
            e.ends_with("exists and is not a socket: remove it, or choose another `socket`"),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
