//! An HTTP CONNECT tunnel for tonic's connector, under its TLS. Written here rather than
//! taken from hyper-util's `Tunnel` because that one reports every refusal but a 407 as
//! "unsuccessful": proxies answer a wrong credential with 407 or 401 (tinyproxy) and a
//! forbidden port with 403, and an operator needs to know which.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;

/// The most a proxy's answer to CONNECT may take, headers included.
const MAX_ANSWER: usize = 8 * 1024;

/// Why the tunnel was not made, as the operator reads it.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Nothing answers at the proxy's address.
    #[error("cannot reach the HTTP proxy {0}: {1}")]
    Unreachable(String, std::io::Error),
    /// 401 or 407.
    #[error("the HTTP proxy refused its credentials ({0})")]
    Credentials(u16),
    /// 403.
    #[error("the HTTP proxy refused to CONNECT to {0} (403: a port or host it does not allow)")]
    Forbidden(String),
    /// Any other answer but 2xx.
    #[error("the HTTP proxy answered CONNECT to {0} with {1}")]
    Status(String, u16),
    /// The answer is not HTTP, too long, cut short, or late.
    #[error("the HTTP proxy's answer to CONNECT is not usable: {0}")]
    Answer(String),
}

/// Opens tunnels through the proxy at `address` (`host:port`), with a Basic credential.
#[derive(Clone, Debug)]
pub(crate) struct Connect {
    pub(crate) address: String,
    pub(crate) basic: Option<String>,
    pub(crate) timeout: Duration,
}

impl tonic::codegen::Service<Uri> for Connect {
    type Response = TokioIo<TcpStream>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let late = || ProxyError::Answer(format!("nothing within {:?}", this.timeout));
            tokio::time::timeout(this.timeout, this.tunnel(destination))
                .await
                .map_err(|_| late())?
        })
    }
}

impl Connect {
    async fn tunnel(&self, destination: Uri) -> Result<TokioIo<TcpStream>, ProxyError> {
        let host = destination
            .host()
            .ok_or_else(|| ProxyError::Answer("the destination has no host".into()))?;
        let port = destination
            .port_u16()
            .unwrap_or(if destination.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let target = format!("{host}:{port}");
        let mut stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| ProxyError::Unreachable(self.address.clone(), e))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(basic) = &self.basic {
            request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        let broken = |e: std::io::Error| ProxyError::Answer(e.to_string());
        stream.write_all(request.as_bytes()).await.map_err(broken)?;
        // Byte by byte up to the blank line: what follows belongs to TLS.
        let mut answer = Vec::with_capacity(256);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_ANSWER {
                return Err(ProxyError::Answer("its headers are too long".into()));
            }
            let byte = stream.read_u8().await.map_err(broken)?;
            answer.push(byte);
        }
        let status =
            answer_status(&answer).ok_or_else(|| ProxyError::Answer("it is not HTTP".into()))?;
        match status {
            200..=299 => Ok(TokioIo::new(stream)),
            401 | 407 => Err(ProxyError::Credentials(status)),
            403 => Err(ProxyError::Forbidden(target)),
            other => Err(ProxyError::Status(target, other)),
        }
    }
}

/// The status code of a proxy's answer (`HTTP/1.x NNN ...` on its first line), or `None`
/// when it is not an HTTP/1 status line.
pub fn answer_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let version = words.next()?;
    let code = words.next()?;
    let well_formed = version.len() == 8
        && version.starts_with("HTTP/1.")
        && code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::Service as _;

    /// A one-shot proxy answering `answer` to whatever it is sent; returns what it got.
    async fn proxy(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 1024];
            let n = socket.read(&mut got).await.unwrap();
            got.truncate(n);
            socket.write_all(answer).await.unwrap();
            got
        });
        (address, served)
    }

    async fn call(address: String) -> Result<TokioIo<TcpStream>, ProxyError> {
        Connect {
            address,
            basic: Some("dTpw".into()),
            timeout: Duration::from_secs(5),
        }
        .call("https://a.example:7171".parse().unwrap())
        .await
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            answer_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(answer_status(b"HTTP/1.0 407\r\n"), Some(407));
        for bad in [
            &b""[..],
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 20\r\n",
            b"HTTP/1.1 +200 x",
            b"\xff\xfe",
        ] {
            assert_eq!(answer_status(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn answers_are_told_apart() {
        let (address, served) = proxy(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        assert!(call(address).await.is_ok());
        let sent = String::from_utf8(served.await.unwrap()).unwrap();
        assert!(
            sent.starts_with("CONNECT a.example:7171 HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Proxy-Authorization: Basic dTpw\r\n"),
            "{sent}"
        );

        for (answer, expected) in [
            (
                &b"HTTP/1.0 401 Unauthorized\r\n\r\n"[..],
                "refused its credentials (401)",
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "(407)",
            ),
            (
                b"HTTP/1.1 403 Forbidden\r\n\r\n",
                "refused to CONNECT to a.example:7171",
            ),
            (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "with 502"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
            (b"HTTP/1.1 200 OK\r\n", "not usable"),
        ] {
            let (address, _served) = proxy(answer).await;
            let e = call(address).await.expect_err("refused").to_string();
            assert!(e.contains(expected), "{expected}: {e}");
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        let e = call(address).await.expect_err("down").to_string();
        assert!(e.starts_with("cannot reach the HTTP proxy"), "{e}");
    }
}
