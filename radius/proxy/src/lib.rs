//! `entitle-radius-proxy`: a TPS-licensing RADIUS proxy. Put it in front of any RADIUS
//! server (FreeRADIUS, a vendor's, anything that speaks RFC 2865/2866) and point the NAS
//! clients at it: each request is checked against the licence, what is admitted is
//! forwarded to an upstream server, and the answer goes back to the right client. The
//! server behind it is licensed by TPS without changing it.
//!
//! ```sh
//! entitle-radius-proxy --config proxy.toml
//! ```
//!
//! # What counts
//! - Every **Access-Request** is one transaction and is enforced (`counting.access =
//!   "enforce"`).
//! - **Accounting-Requests** are counted and reported but never dropped
//!   (`counting.accounting = "count"`): losing accounting loses billing data, and a dropped
//!   one only comes back as a retransmission. Beyond the licence they are forwarded and show
//!   as rejected in the usage (`over_licence_forwarded` in the metrics). Either type can be
//!   set to `enforce`, `count` or `off`.
//! - **Status-Server** is answered by the proxy itself and never counted.
//! - A **retransmission** (same client address, source port, Identifier and Request
//!   Authenticator within `reply_cache_secs`, RFC 5080 §2.2.2) is answered from the reply
//!   cache, or sent on again while the first is outstanding, and never counted twice; one
//!   dropped beyond the licence is dropped again.
//! - **Beyond the licence**, an Access-Request is dropped silently (as FreeRADIUS `max_pps`
//!   does), or answered with an Access-Reject and a Reply-Message with `[over_licence]
//!   action = "reject"`. Counted either way: rejected in the gate's usage (so in `show
//!   license usage` and the authority's ledger) and in the metrics.
//!
//! Each counted request is one [`Worker::check`](entitle_engine::Worker::check) on the gate,
//! against the entitlement `counting.tag` (`PAR-TPS` by default: the product catalogue of
//! the licence feeds it from `PAR-TPS` and `PAR-ADD-TPS` licences), resolved once at start.
//!
//! # The licence
//! `[licence] mode = "embedded"` runs the licence agent inside the proxy: the table
//! `[licence.sidecar]` is exactly an `entitled.toml` ([`entitle_sidecar::RawConfig`]); its
//! socket (`<data_dir>/entitled.sock` unless `socket` says otherwise, mode 0660, of
//! `socket_group`) serves the `entitle` CLI (`entitle --sidecar unix:PATH license smart
//! register <token>`, `show license status`...), and its `listen`, when given, serves it on
//! TCP with the bearer credential of `<data_dir>/api.credential`. The proxy prints
//! `entitle-radius-proxy licence agent on unix:PATH` (and the TCP address). `mode =
//! "attached"` attaches the proxy's gate to a running `entitled` at `sidecar_url`
//! (`unix:/var/lib/entitled/entitled.sock`, or `http://host:port` with
//! `sidecar_credential_file`), which holds the licence and may serve other gates too; the
//! proxy waits up to `attach_wait_secs` for its first limits and enforces 1 TPS until then.
//!
//! # The relay
//! See [`relay`]: Identifiers mapped per upstream (256 per socket, more sockets when all are
//! taken), a fresh random Request Authenticator per forward, the User-Password hidden again
//! with the upstream's secret, our own Proxy-State added and checked on the answer, every
//! authenticator and Message-Authenticator verified with the sender's secret and recomputed
//! with the receiver's.
//!
//! **BlastRADIUS** (CVE-2024-3596): a Message-Authenticator goes in every forwarded request
//! and every reply. A client with `require_message_authenticator = true` must send one in
//! each Access-Request (and an upstream with it in each answer), or the packet is dropped
//! and counted.
//!
//! **Upstream failure**: an upstream that does not answer within `timeout_ms` has the
//! request sent to the next one; after `max_timeouts` timeouts in a row it is marked down
//! for `down_secs`. A request is answered at most once.
//!
//! **Bad input** (malformed datagrams, unknown client addresses, wrong secrets, floods) is
//! dropped with a counter and a rate-limited log line (one a second per reason); the proxy
//! keeps serving.
//!
//! # Configuration
//!
//! ```toml
//! listen = ["0.0.0.0:1812", "0.0.0.0:1813"]   # auth and accounting: told apart by code
//! metrics_listen = "127.0.0.1:9465"            # Prometheus /metrics (optional)
//! reply_cache_secs = 5                         # RFC 5080 duplicate detection
//! socket_buffer_bytes = 8388608                # SO_RCVBUF and SO_SNDBUF
//!
//! [counting]
//! tag = "PAR-TPS"          # the gate entitlement a request takes
//! access = "enforce"       # enforce | count | off
//! accounting = "count"
//!
//! [over_licence]
//! action = "drop"          # or "reject", with reply_message = "..."
//!
//! [[client]]
//! name = "bng-1"
//! address = "192.0.2.0/24"               # an address or a network; first match wins
//! secret_file = "/etc/entitle/bng-1.secret"   # mode 0600; or secret = "..."
//! require_message_authenticator = true
//!
//! [[upstream]]                           # in order of preference
//! name = "freeradius"
//! auth = "127.0.0.1:11812"
//! acct = "127.0.0.1:11813"               # default: auth's port + 1
//! secret = "..."
//! timeout_ms = 1000
//! max_timeouts = 3
//! down_secs = 30
//!
//! [licence]
//! mode = "embedded"
//! [licence.sidecar]                      # an entitled.toml
//! data_dir = "/var/lib/entitle-radius-proxy"   # the CLI's socket: entitled.sock in it
//! socket_group = "entitle"               # the operators' group (optional)
//! authority_public_key = "/etc/entitle/authority.pub"
//! [licence.sidecar.udi]
//! product_id = "CPAR"
//! serial = "FCH2231V0AB"
//! [licence.sidecar.agent]
//! selection = { "PAR-TPS" = 1 }
//! ```
//!
//! # Metrics
//! See [`metrics`]: `entitle_radius_proxy_packets_total{reason}` for every outcome,
//! upstream up/down gauges and timeouts, and with an embedded agent the agent's own
//! (`entitle_limit_tps`, `entitle_license_state`, the spool).
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod batch;
pub mod cache;
pub mod config;
pub mod licence;
pub mod metrics;
pub mod program;
pub mod ratelog;
pub mod relay;
mod server;
pub mod socket;
pub mod upstream;

pub use config::{Config, RawConfig};
pub use server::Proxy;

/// Why the proxy cannot start or do what was asked. Each message is one sentence for the
/// operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A socket or file operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The licence side failed (the agent, the attachment, the gate).
    #[error("licence: {0}")]
    Licence(String),
}

/// The proxy's result.
pub type Result<T> = std::result::Result<T, Error>;
