//! The clients file: which addresses may send requests, the secret each shares with the
//! server, and whether its Access-Requests must carry a Message-Authenticator.
//!
//! One client per line; blank lines and `#` comments are ignored:
//!
//! ```text
//! # ADDRESS     SECRET          [OPTION]
//! 127.0.0.1     testing123
//! ::1           "a secret with blanks"   require-message-authenticator
//! ```
//!
//! The address is one IPv4 or IPv6 address (no networks, no host names); the secret is a
//! bare word or a double-quoted string, not empty; the one option,
//! `require-message-authenticator`, drops Access-Requests without a valid
//! Message-Authenticator (RFC 3579; the defence against BlastRADIUS, CVE-2024-3596).
//! Without it a missing one is allowed, but one that is present is always checked.
//! Status-Server always needs one (RFC 5997). A file listing no client is refused.
//!
//! ```
//! use entitle_examples::radius_server::Clients;
//! use entitle_radius::Policy;
//!
//! let clients = Clients::parse("127.0.0.1 s3cret\n127.0.0.2 other require-message-authenticator")?;
//! let client = clients.get("127.0.0.1".parse()?).expect("listed");
//! assert_eq!(client.secret(), b"s3cret");
//! assert_eq!(client.policy(), Policy::AllowMissingMessageAuthenticator);
//! assert!(clients.get("127.0.0.3".parse()?).is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use entitle_radius::Policy;

use super::error::{Error, LineError, Result};
use super::users::ParseError;
use super::words::split;

/// The one option a client may have.
const REQUIRE_MA: &str = "require-message-authenticator";

/// One client: its shared secret and its policy. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    secret: Vec<u8>,
    policy: Policy,
}

impl Client {
    /// The secret shared with this client.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether this client's Access-Requests must carry a Message-Authenticator.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("secret", &"..")
            .field("policy", &self.policy)
            .finish()
    }
}

/// The clients of a clients file, by address.
#[derive(Clone, Debug)]
pub struct Clients {
    by_address: HashMap<IpAddr, Client>,
}

impl Clients {
    /// Reads and parses a clients file.
    pub fn read(path: &Path) -> Result<Clients> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        match Clients::parse(&text) {
            Ok(clients) => Ok(clients),
            Err(ClientsError::Line(e)) => Err(e.in_file(path)),
            Err(ClientsError::Empty) => Err(Error::NoClients {
                path: path.to_owned(),
            }),
        }
    }

    /// Parses the text of a clients file.
    pub fn parse(text: &str) -> Result<Clients, ClientsError> {
        let mut by_address: HashMap<IpAddr, (Client, usize)> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let at = |problem| {
                ClientsError::Line(ParseError {
                    line: line_no,
                    problem,
                })
            };
            let Some((address, client)) = parse_line(line).map_err(at)? else {
                continue;
            };
            if let Some((_, first)) = by_address.get(&address) {
                return Err(at(LineError::DuplicateClient {
                    address,
                    first: *first,
                }));
            }
            by_address.insert(address, (client, line_no));
        }
        if by_address.is_empty() {
            return Err(ClientsError::Empty);
        }
        Ok(Clients {
            by_address: by_address
                .into_iter()
                .map(|(address, (client, _))| (address, client))
                .collect(),
        })
    }

    /// The client at `address` (an IPv4-mapped IPv6 address is looked up as IPv4).
    #[inline]
    pub fn get(&self, address: IpAddr) -> Option<&Client> {
        self.by_address.get(&address.to_canonical())
    }

    /// How many clients there are (at least one).
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Always false: a clients file lists at least one client.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

/// Why the text of a clients file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientsError {
    /// A malformed line.
    #[error(transparent)]
    Line(ParseError),
    /// No client at all.
    #[error("no clients are listed")]
    Empty,
}

fn parse_line(line: &str) -> Result<Option<(IpAddr, Client)>, LineError> {
    let mut words = split(line)?.into_iter();
    let Some(address) = words.next() else {
        return Ok(None);
    };
    if address.quoted || address.is_comma() {
        return Err(LineError::BadAddress);
    }
    let address: IpAddr = address.text.parse().map_err(|_| LineError::BadAddress)?;
    let secret = match words.next() {
        Some(w) if !w.is_comma() => w.text,
        _ => return Err(LineError::NoSecret),
    };
    if secret.is_empty() {
        return Err(LineError::EmptySecret);
    }
    let mut policy = Policy::AllowMissingMessageAuthenticator;
    for option in words {
        match option.text.as_str() {
            REQUIRE_MA if !option.quoted => policy = Policy::RequireMessageAuthenticator,
            _ => return Err(LineError::UnknownOption),
        }
    }
    Ok(Some((
        address.to_canonical(),
        Client {
            secret: secret.into_bytes(),
            policy,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> LineError {
        match Clients::parse(text).expect_err("refused") {
            ClientsError::Line(e) => e.problem,
            ClientsError::Empty => panic!("refused as empty"),
        }
    }

    #[test]
    fn addresses_secrets_and_the_option() {
        let clients = Clients::parse(
            "# clients\n127.0.0.1 testing123\n\
             ::1\t\"with blank # and hash\" require-message-authenticator # comment\n\
             ::ffff:10.0.0.1 mapped\n",
        )
        .expect("parses");
        assert_eq!(clients.len(), 3);
        let v4 = clients.get("127.0.0.1".parse().expect("ip")).expect("v4");
        assert_eq!(v4.secret(), b"testing123");
        assert_eq!(v4.policy(), Policy::AllowMissingMessageAuthenticator);
        let v6 = clients.get("::1".parse().expect("ip")).expect("v6");
        assert_eq!(v6.secret(), b"with blank # and hash");
        assert_eq!(v6.policy(), Policy::RequireMessageAuthenticator);
        assert!(clients.get("10.0.0.1".parse().expect("ip")).is_some());
        assert!(
            clients
                .get("::ffff:127.0.0.1".parse().expect("ip"))
                .is_some(),
            "a mapped source address finds the IPv4 client"
        );
        assert!(clients.get("127.0.0.2".parse().expect("ip")).is_none());
        assert!(!format!("{clients:?}").contains("testing123"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        assert_eq!(
            Clients::parse("127.0.0.1 a\n\n10.0.0.0/8 b").expect_err("refused"),
            ClientsError::Line(ParseError {
                line: 3,
                problem: LineError::BadAddress
            })
        );
        assert_eq!(problem("localhost secret"), LineError::BadAddress);
        assert_eq!(problem("\"127.0.0.1\" secret"), LineError::BadAddress);
        assert_eq!(problem("127.0.0.256 secret"), LineError::BadAddress);
        assert_eq!(problem(", secret"), LineError::BadAddress);
        assert_eq!(problem("127.0.0.1"), LineError::NoSecret);
        assert_eq!(
            problem("127.0.0.1 # secret in a comment"),
            LineError::NoSecret
        );
        assert_eq!(problem("127.0.0.1 , x"), LineError::NoSecret);
        assert_eq!(problem("127.0.0.1 \"\""), LineError::EmptySecret);
        assert_eq!(problem("127.0.0.1 two words"), LineError::UnknownOption);
        assert_eq!(
            problem("127.0.0.1 s \"require-message-authenticator\""),
            LineError::UnknownOption
        );
        assert_eq!(problem("127.0.0.1 \"s"), LineError::UnterminatedQuote);
        assert_eq!(
            problem("127.0.0.1 a\n::ffff:127.0.0.1 b"),
            LineError::DuplicateClient {
                address: "127.0.0.1".parse().expect("ip"),
                first: 1
            }
        );
        assert_eq!(
            Clients::parse("# none\n\n").expect_err("empty"),
            ClientsError::Empty
        );
    }

    #[test]
    fn no_error_message_quotes_a_secret() {
        for text in [
            "hunter2 127.0.0.1",
            "127.0.0.1 hunter2 hunter2",
            "127.0.0.1 \"hunter2",
        ] {
            let message = Clients::parse(text).expect_err("refused").to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("clients");
        std::fs::write(&path, "127.0.0.1\n").expect("written");
        let message = Clients::read(&path).expect_err("refused").to_string();
        assert!(message.contains("clients:1: no secret"), "{message}");
        std::fs::write(&path, "# nobody\n").expect("written");
        assert!(matches!(Clients::read(&path), Err(Error::NoClients { .. })));
    }
}
