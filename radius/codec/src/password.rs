//! User-Password hiding (RFC 2865 §5.2): the password, padded with NULs to a multiple of 16
//! octets, XORed block by block with MD5(secret, request authenticator) for the first block
//! and MD5(secret, previous hidden block) for each next one. At most 128 octets.
//!
//! Revealing strips the trailing NULs of the padding, so a password that itself ends in NUL
//! octets loses them (RFC 2865 gives no way to tell them apart).
//!
//! ```
//! use entitle_radius::password::{hide_password, unhide_password};
//!
//! let (secret, authenticator) = (b"xyzzy5461", [0x0f; 16]);
//! let hidden = hide_password(b"arctangent", secret, &authenticator)?;
//! assert_eq!(hidden.len(), 16);
//! assert_eq!(unhide_password(&hidden, secret, &authenticator)?, b"arctangent");
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use md5::{Digest, Md5};

use crate::attribute::{Attribute, USER_PASSWORD};
use crate::auth::check_secret;
use crate::error::{Error, Result};
use crate::packet::{AUTHENTICATOR_LEN, Packet};

/// The longest password that can be hidden, and the longest hidden value.
pub const MAX_PASSWORD_LEN: usize = 128;

const BLOCK: usize = 16;

/// Hides a password with the shared secret and the request's authenticator. An empty
/// password becomes one block of padding; one over 128 octets is refused.
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
) -> Result<Vec<u8>> {
    check_secret(secret)?;
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::PasswordTooLong {
            len: password.len(),
        });
    }
    let blocks = password.len().div_ceil(BLOCK).max(1);
    let mut hidden = password.to_vec();
    hidden.resize(blocks * BLOCK, 0);
    let mut previous: [u8; BLOCK] = *authenticator;
    for block in hidden.chunks_exact_mut(BLOCK) {
        let pad = Md5::new()
            .chain_update(secret)
            .chain_update(previous)
            .finalize();
        block.iter_mut().zip(pad).for_each(|(octet, p)| *octet ^= p);
        previous.copy_from_slice(block);
    }
    Ok(hidden)
}

/// Reveals a hidden User-Password with the shared secret and the request's authenticator,
/// stripping the trailing NUL padding. Refuses a hidden value that is empty, longer than 128
/// octets or not a multiple of 16 ([`Error::HiddenPasswordLength`]).
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; AUTHENTICATOR_LEN],
) -> Result<Vec<u8>> {
    check_secret(secret)?;
    if hidden.is_empty() || hidden.len() > MAX_PASSWORD_LEN || !hidden.len().is_multiple_of(BLOCK) {
        return Err(Error::HiddenPasswordLength { len: hidden.len() });
    }
    let mut password = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = authenticator;
    for block in hidden.chunks_exact(BLOCK) {
        let pad = Md5::new()
            .chain_update(secret)
            .chain_update(previous)
            .finalize();
        password.extend(block.iter().zip(pad).map(|(octet, p)| octet ^ p));
        previous = block;
    }
    let end = password
        .iter()
        .rposition(|&octet| octet != 0)
        .map_or(0, |i| i + 1);
    password.truncate(end);
    Ok(password)
}

impl Packet {
    /// The User-Password of this Access-Request, revealed with the shared secret and this
    /// packet's authenticator; `None` if it has none, [`Error::DuplicateAttribute`] if it has
    /// more than one.
    pub fn user_password(&self, secret: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut passwords = self.get_all(USER_PASSWORD);
        let Some(first) = passwords.next() else {
            return Ok(None);
        };
        if passwords.next().is_some() {
            return Err(Error::DuplicateAttribute {
                kind: USER_PASSWORD,
            });
        }
        unhide_password(&first.value, secret, &self.authenticator).map(Some)
    }

    /// Hides a password with the shared secret and this packet's authenticator (so set the
    /// authenticator first) and puts it in place of the User-Password, or appends one. A proxy
    /// calls this with the next hop's secret after reading the password with the previous one.
    pub fn set_user_password(&mut self, password: &[u8], secret: &[u8]) -> Result<()> {
        let hidden = hide_password(password, secret, &self.authenticator)?;
        let mut positions = self
            .attributes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.kind == USER_PASSWORD)
            .map(|(i, _)| i);
        match (positions.next(), positions.next()) {
            (Some(_), Some(_)) => Err(Error::DuplicateAttribute {
                kind: USER_PASSWORD,
            }),
            (Some(i), None) => {
                self.attributes[i].value = hidden;
                Ok(())
            }
            (None, _) => {
                self.push(Attribute::new(USER_PASSWORD, hidden));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Code;

    const SECRET: &[u8] = b"secret";
    const AUTH: [u8; 16] = [0x11; 16];

    #[test]
    fn lengths_round_up_to_blocks() {
        for (len, hidden) in [(0, 16), (1, 16), (16, 16), (17, 32), (127, 128), (128, 128)] {
            let password = vec![b'p'; len];
            let h = hide_password(&password, SECRET, &AUTH).unwrap();
            assert_eq!(h.len(), hidden, "password of {len}");
            assert_eq!(unhide_password(&h, SECRET, &AUTH).unwrap(), password);
        }
        assert_eq!(
            hide_password(&[b'p'; 129], SECRET, &AUTH),
            Err(Error::PasswordTooLong { len: 129 })
        );
    }

    #[test]
    fn bad_hidden_lengths_are_refused() {
        for len in [0, 1, 15, 17, 31, 144] {
            assert_eq!(
                unhide_password(&vec![0; len], SECRET, &AUTH),
                Err(Error::HiddenPasswordLength { len }),
            );
        }
    }

    #[test]
    fn each_block_is_chained_to_the_previous_one() {
        // Same plaintext blocks must not give the same hidden blocks.
        let h = hide_password(&[b'a'; 32], SECRET, &AUTH).unwrap();
        assert_ne!(h[..16], h[16..]);
        // Another authenticator or secret gives another hidden value.
        assert_ne!(h, hide_password(&[b'a'; 32], SECRET, &[0x12; 16]).unwrap());
        assert_ne!(h, hide_password(&[b'a'; 32], b"other", &AUTH).unwrap());
    }

    #[test]
    fn packet_helpers_replace_in_place() {
        let mut packet = Packet::new(Code::AccessRequest, 1, AUTH);
        assert_eq!(packet.user_password(SECRET), Ok(None));
        packet.set_user_password(b"one", SECRET).unwrap();
        packet.set_user_password(b"two", SECRET).unwrap();
        assert_eq!(packet.attributes.len(), 1);
        assert_eq!(packet.user_password(SECRET), Ok(Some(b"two".to_vec())));
        packet.push(packet.attributes[0].clone());
        assert_eq!(
            packet.user_password(SECRET),
            Err(Error::DuplicateAttribute {
                kind: USER_PASSWORD
            })
        );
        assert_eq!(
            packet.set_user_password(b"three", SECRET),
            Err(Error::DuplicateAttribute {
                kind: USER_PASSWORD
            })
        );
    }
}
