//! The chain of trust through a satellite: devices trust the cloud's key only, and accept
//! what a satellite signs when the envelope carries the satellite's delegation, signed by
//! the cloud, unexpired, not revoked, and naming the account the message is for.
//!
//! Revocations travel the same way: every answer may carry the cloud's newest signed
//! [`pb::RevocationList`]; a device keeps the newest it has verified ([`Revocations`]) and
//! refuses every delegation it names, whichever satellite shows it.
//!
//! ```
//! use entitle_proto::{delegation, pb, signing};
//!
//! let cloud = signing::generate_key().unwrap();
//! let satellite = signing::generate_key().unwrap();
//! let grant = pb::Delegation {
//!     serial: 1,
//!     satellite: "site-a".into(),
//!     satellite_public_key: satellite.verifying_key().to_bytes().to_vec(),
//!     accounts: vec![pb::AccountName { smart_account: "acme".into(), virtual_account: "core".into() }],
//!     issued_at: 0,
//!     expires_at: 1_000,
//! };
//! let mut signed = signing::sign(&satellite, "Authorization", &pb::Authorization::default());
//! signed.delegation = Some(Box::new(signing::sign(&cloud, "Delegation", &grant)));
//! let none = delegation::Revocations::default();
//! let (_, issuer): (pb::Authorization, _) =
//!     delegation::open(&cloud.verifying_key(), "Authorization", &signed, 10, &none).unwrap();
//! assert!(issuer.may_sign_for("acme", "core").is_ok());
//! assert!(issuer.may_sign_for("acme", "edge").is_err());
//! // Past its expiry the chain no longer holds.
//! assert!(delegation::open::<pb::Authorization>(&cloud.verifying_key(), "Authorization", &signed, 1_000, &none).is_err());
//! ```

use ed25519_dalek::VerifyingKey;
use prost::Message;

use crate::pb;
use crate::signing::{self, SignatureError};

/// Who signed a message that verified.
#[derive(Clone, Debug, PartialEq)]
pub enum Issuer {
    /// The trusted (cloud) key itself.
    Cloud,
    /// A satellite, through its delegation.
    Satellite(pb::Delegation),
}

impl Issuer {
    /// Whether the issuer may sign for virtual account `sa`/`va`: the cloud for any, a
    /// satellite for those its delegation names.
    pub fn may_sign_for(&self, sa: &str, va: &str) -> Result<(), SignatureError> {
        match self {
            Issuer::Cloud => Ok(()),
            Issuer::Satellite(d) => {
                if d.accounts
                    .iter()
                    .any(|a| a.smart_account == sa && a.virtual_account == va)
                {
                    Ok(())
                } else {
                    Err(SignatureError::NotDelegated {
                        satellite: d.satellite.clone(),
                        account: format!("{sa}/{va}"),
                    })
                }
            }
        }
    }

    /// A short name for messages: `the cloud` or `satellite "name"`.
    pub fn describe(&self) -> String {
        match self {
            Issuer::Cloud => "the cloud".into(),
            Issuer::Satellite(d) => format!("satellite {:?}", d.satellite),
        }
    }

    /// Whether two issuers are the same signer (a renewed delegation of the same key is).
    pub fn same_signer(&self, other: &Issuer) -> bool {
        match (self, other) {
            (Issuer::Cloud, Issuer::Cloud) => true,
            (Issuer::Satellite(a), Issuer::Satellite(b)) => {
                a.satellite_public_key == b.satellite_public_key
            }
            _ => false,
        }
    }
}

/// The newest revocation list verified so far.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    list: pb::RevocationList,
    signed: Option<pb::Signed>,
}

impl Revocations {
    /// The list in `signed`, checked with the cloud's key.
    pub fn from_signed(root: &VerifyingKey, signed: &pb::Signed) -> Result<Self, SignatureError> {
        let list = signing::open(root, "RevocationList", signed)?;
        Ok(Self {
            list,
            signed: Some(strip(signed)),
        })
    }

    /// Takes `offered` when it verifies with the cloud's key and is newer than the one
    /// held; answers whether it did. A list that does not verify is ignored (it proves
    /// nothing either way).
    pub fn learn(&mut self, root: &VerifyingKey, offered: Option<&pb::Signed>) -> bool {
        let Some(offered) = offered else { return false };
        match Self::from_signed(root, offered) {
            Ok(newer) if newer.list.version > self.list.version => {
                *self = newer;
                true
            }
            _ => false,
        }
    }

    /// Whether the delegation `serial` is revoked.
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.list.serials.contains(&serial)
    }

    /// The list's version (0 when none is held).
    pub fn version(&self) -> u64 {
        self.list.version
    }

    /// The signed list, to pass on or to keep.
    pub fn signed(&self) -> Option<&pb::Signed> {
        self.signed.as_ref()
    }
}

/// An envelope without its attachments, as it is kept.
fn strip(signed: &pb::Signed) -> pb::Signed {
    pb::Signed {
        body: signed.body.clone(),
        signature: signed.signature.clone(),
        delegation: None,
        revocations: None,
    }
}

/// Checks a delegation with the cloud's key at unix second `now`.
pub fn check_delegation(
    root: &VerifyingKey,
    signed: &pb::Signed,
    now: i64,
    revoked: &Revocations,
) -> Result<(pb::Delegation, VerifyingKey), SignatureError> {
    let delegation: pb::Delegation = signing::open(root, "Delegation", signed)
        .map_err(|_| SignatureError::UntrustedDelegation)?;
    if now >= delegation.expires_at {
        return Err(SignatureError::DelegationExpired {
            satellite: delegation.satellite,
            expired_at: delegation.expires_at,
        });
    }
    if revoked.is_revoked(delegation.serial) {
        return Err(SignatureError::DelegationRevoked {
            satellite: delegation.satellite,
            serial: delegation.serial,
        });
    }
    let key = signing::verifying_key(&delegation.satellite_public_key)?;
    Ok((delegation, key))
}

/// Opens `signed` as type `type_name`: signed by the cloud key `root` itself, or by a
/// satellite through the delegation it carries, checked at unix second `now` against
/// `revoked`. The caller checks the account with [`Issuer::may_sign_for`].
pub fn open<M: Message + Default>(
    root: &VerifyingKey,
    type_name: &'static str,
    signed: &pb::Signed,
    now: i64,
    revoked: &Revocations,
) -> Result<(M, Issuer), SignatureError> {
    match signed.delegation.as_deref() {
        None => Ok((signing::open(root, type_name, signed)?, Issuer::Cloud)),
        Some(delegation) => {
            let (delegation, key) = check_delegation(root, delegation, now, revoked)?;
            Ok((
                signing::open(&key, type_name, signed)?,
                Issuer::Satellite(delegation),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegation(cloud: &ed25519_dalek::SigningKey, serial: u64, key: &[u8]) -> pb::Signed {
        signing::sign(
            cloud,
            "Delegation",
            &pb::Delegation {
                serial,
                satellite: "s".into(),
                satellite_public_key: key.to_vec(),
                accounts: vec![pb::AccountName {
                    smart_account: "a".into(),
                    virtual_account: "v".into(),
                }],
                issued_at: 0,
                expires_at: 100,
            },
        )
    }

    fn revocations(cloud: &ed25519_dalek::SigningKey, version: u64, serials: &[u64]) -> pb::Signed {
        signing::sign(
            cloud,
            "RevocationList",
            &pb::RevocationList {
                version,
                serials: serials.to_vec(),
                issued_at: 0,
            },
        )
    }

    #[test]
    fn only_a_chain_to_the_cloud_key_verifies() {
        let cloud = signing::generate_key().unwrap();
        let satellite = signing::generate_key().unwrap();
        let stranger = signing::generate_key().unwrap();
        let root = cloud.verifying_key();
        let none = Revocations::default();
        let body = pb::Authorization::default();
        let sat_key = satellite.verifying_key().to_bytes();

        // The satellite's signature alone is not the cloud's.
        let bare = signing::sign(&satellite, "Authorization", &body);
        assert_eq!(
            open::<pb::Authorization>(&root, "Authorization", &bare, 1, &none).unwrap_err(),
            SignatureError::Invalid
        );
        // A delegation signed by someone else.
        let mut forged = bare.clone();
        forged.delegation = Some(Box::new(delegation(&stranger, 1, &sat_key)));
        assert_eq!(
            open::<pb::Authorization>(&root, "Authorization", &forged, 1, &none).unwrap_err(),
            SignatureError::UntrustedDelegation
        );
        // A real delegation for another key than the one that signed.
        let mut borrowed = signing::sign(&stranger, "Authorization", &body);
        borrowed.delegation = Some(Box::new(delegation(&cloud, 1, &sat_key)));
        assert_eq!(
            open::<pb::Authorization>(&root, "Authorization", &borrowed, 1, &none).unwrap_err(),
            SignatureError::Invalid
        );
        // The real chain, until it expires.
        let mut chained = bare;
        chained.delegation = Some(Box::new(delegation(&cloud, 1, &sat_key)));
        let (_, issuer) =
            open::<pb::Authorization>(&root, "Authorization", &chained, 99, &none).unwrap();
        assert!(issuer.may_sign_for("a", "v").is_ok());
        assert!(matches!(
            issuer.may_sign_for("a", "w"),
            Err(SignatureError::NotDelegated { .. })
        ));
        assert!(matches!(
            open::<pb::Authorization>(&root, "Authorization", &chained, 100, &none),
            Err(SignatureError::DelegationExpired {
                expired_at: 100,
                ..
            })
        ));
    }

    #[test]
    fn a_revocation_list_is_learnt_only_when_signed_and_newer() {
        let cloud = signing::generate_key().unwrap();
        let stranger = signing::generate_key().unwrap();
        let root = cloud.verifying_key();
        let satellite = signing::generate_key().unwrap();
        let mut held = Revocations::default();
        assert!(!held.learn(&root, Some(&revocations(&stranger, 5, &[1]))));
        assert!(held.learn(&root, Some(&revocations(&cloud, 2, &[1]))));
        assert!(
            !held.learn(&root, Some(&revocations(&cloud, 1, &[]))),
            "older"
        );
        assert!(held.is_revoked(1));
        let mut chained = signing::sign(&satellite, "Authorization", &pb::Authorization::default());
        chained.delegation = Some(Box::new(delegation(
            &cloud,
            1,
            &satellite.verifying_key().to_bytes(),
        )));
        assert!(matches!(
            open::<pb::Authorization>(&root, "Authorization", &chained, 1, &held),
            Err(SignatureError::DelegationRevoked { serial: 1, .. })
        ));
        // Kept without attachments, and it reads back.
        let again = Revocations::from_signed(&root, held.signed().unwrap()).unwrap();
        assert_eq!(again.version(), 2);
    }
}
