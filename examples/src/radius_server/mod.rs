//! A small RADIUS server licensed by entitle: every Access-Request and Accounting-Request
//! is one `check()` on the gate in the packet path; admitted ones are answered, the rest
//! dropped (or, with [`OverLimit::Reject`], refused with an Access-Reject).
//!
//! It authenticates PAP users from a [`Users`] file, knows its clients and their secrets
//! from a [`Clients`] file, verifies every request with the client's secret (and its
//! Message-Authenticator policy) through `entitle_radius`, and answers Status-Server
//! without spending the licence. Its gate is licensed one of three ways ([`Licensed`]):
//! a fixed demo limit, the licence agent embedded in the process, or attached to a running
//! `entitled`. The example `radius-server` is a thin `main` around this module.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use entitle_examples::radius_server::*;
//!
//! let licensed = Licensed::standalone(100, 10)?;
//! let server = Server::bind(ServerConfig {
//!     listen: "127.0.0.1:1812".parse()?,
//!     clients: Clients::read("examples/radius/clients".as_ref())?,
//!     users: Users::read("examples/radius/users".as_ref())?,
//!     licence: Some(licensed.licence.clone()),
//!     over_limit: OverLimit::Drop,
//!     workers: 2,
//!     socket_buffer: DEFAULT_SOCKET_BUFFER,
//! })?;
//! let stats = server.stats();
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! println!("{}", stats.totals());
//! # Ok(()) }
//! ```

mod clients;
mod counters;
mod error;
mod licence;
mod server;
mod users;
mod words;
mod worker;

pub use clients::{Client, Clients, ClientsError};
pub use counters::{Stats, Totals};
pub use error::{Error, LineError, Result};
pub use licence::{ATTACH_START_TPS, LicenceError, Licensed, Mode, PAR_TPS};
pub use server::{DEFAULT_SOCKET_BUFFER, Server, ServerConfig};
pub use users::{ParseError, Users};
pub use worker::{Licence, OVER_LIMIT_MESSAGE, OverLimit, Worker};
