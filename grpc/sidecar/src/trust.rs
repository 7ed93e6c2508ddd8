//! The keys the device trusts. The configuration names them (or the vendor compiled them
//! in, [`crate::vendor`]); once the device has registered with an authority key, or
//! installed a reservation code under a codes key, it pins that key in its store. From
//! then on answers and codes are checked against the pinned keys, whatever the
//! configuration says: a changed key file (a mistake, or a licensee pointing the device at
//! an authority of its own) is logged at start-up and takes effect only through the
//! explicit `license smart trust renew`, which is logged too.

use ed25519_dalek::VerifyingKey;
use entitle_codes::CodeVerifyingKey;
use entitle_proto::pb;
use sha2::{Digest as _, Sha256};

use super::config::SidecarConfig;
use super::store::LocalStore;
use super::{Result, SidecarError};

/// A short, stable name of a key: the first 8 bytes of its SHA-256, in hex.
pub fn fingerprint(key: &[u8]) -> String {
    Sha256::digest(key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The configured and the pinned keys.
#[derive(Debug)]
pub(crate) struct Trust {
    configured_authority: VerifyingKey,
    configured_codes: Option<CodeVerifyingKey>,
    pinned_authority: Option<VerifyingKey>,
    pinned_codes: Option<CodeVerifyingKey>,
}

impl Trust {
    /// The configured keys and those pinned in `store`. A pinned key that does not read is
    /// an error: trusting the configured one instead would undo the pin unseen.
    pub(crate) fn open(config: &SidecarConfig, store: &LocalStore) -> Result<Self> {
        let damaged = |which: &str| {
            SidecarError::Config(format!(
                "the pinned {which} key in the local store does not read; restore the store or remove the device's data directory"
            ))
        };
        let pinned_authority = store
            .pinned_key("authority")?
            .map(|bytes| {
                entitle_proto::signing::verifying_key(&bytes).map_err(|_| damaged("authority"))
            })
            .transpose()?;
        let pinned_codes = store
            .pinned_key("codes")?
            .map(|bytes| CodeVerifyingKey::from_bytes(&bytes).map_err(|_| damaged("codes")))
            .transpose()?;
        Ok(Self {
            configured_authority: config.authority_public_key,
            configured_codes: config.codes_public_key,
            pinned_authority,
            pinned_codes,
        })
    }

    /// The key the authority's answers are checked against.
    pub(crate) fn authority(&self) -> VerifyingKey {
        self.pinned_authority.unwrap_or(self.configured_authority)
    }

    /// The key reservation codes are checked against, if any.
    pub(crate) fn codes(&self) -> Option<CodeVerifyingKey> {
        self.pinned_codes.or(self.configured_codes)
    }

    /// One sentence per configured key that differs from the pinned one.
    pub(crate) fn differences(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(pinned) = self.pinned_authority
            && pinned != self.configured_authority
        {
            found.push(format!(
                "the configured authority key {} is not the pinned {}; answers are checked against the pinned key until `license smart trust renew`",
                fingerprint(self.configured_authority.as_bytes()),
                fingerprint(pinned.as_bytes())
            ));
        }
        if let (Some(pinned), Some(configured)) = (self.pinned_codes, self.configured_codes)
            && pinned != configured
        {
            found.push(format!(
                "the configured reservation code key {} is not the pinned {}; codes are checked against the pinned key until `license smart trust renew`",
                fingerprint(&configured.to_bytes()),
                fingerprint(&pinned.to_bytes())
            ));
        }
        found
    }

    /// Pins the authority key in use, at a registration; the event text when it was not
    /// pinned before. The codes key is pinned with it: the device now trusts that authority.
    pub(crate) fn pin_authority(&mut self, store: &LocalStore) -> Result<Option<String>> {
        if self.pinned_authority.is_some() {
            return Ok(None);
        }
        let key = self.configured_authority;
        store.pin_key("authority", key.as_bytes())?;
        self.pinned_authority = Some(key);
        let codes = self.pin_codes(store)?;
        Ok(Some(format!(
            "pinned the authority key {}{}",
            fingerprint(key.as_bytes()),
            codes.map(|c| format!("; {c}")).unwrap_or_default()
        )))
    }

    /// Pins the codes key in use, at a registration or a code's installation.
    pub(crate) fn pin_codes(&mut self, store: &LocalStore) -> Result<Option<String>> {
        let (None, Some(key)) = (self.pinned_codes, self.configured_codes) else {
            return Ok(None);
        };
        store.pin_key("codes", &key.to_bytes())?;
        self.pinned_codes = Some(key);
        Ok(Some(format!(
            "pinned the reservation code key {}",
            fingerprint(&key.to_bytes())
        )))
    }

    /// Trusts the configured keys from now on (`license smart trust renew`): the event
    /// text, or `None` when they are the pinned ones already (or nothing is pinned yet).
    pub(crate) fn renew(&mut self, store: &LocalStore) -> Result<Option<String>> {
        let mut changed = Vec::new();
        if let Some(old) = self.pinned_authority
            && old != self.configured_authority
        {
            let new = self.configured_authority;
            store.pin_key("authority", new.as_bytes())?;
            self.pinned_authority = Some(new);
            changed.push(format!(
                "authority key {} -> {}",
                fingerprint(old.as_bytes()),
                fingerprint(new.as_bytes())
            ));
        }
        if let (Some(old), Some(new)) = (self.pinned_codes, self.configured_codes)
            && old != new
        {
            store.pin_key("codes", &new.to_bytes())?;
            self.pinned_codes = Some(new);
            changed.push(format!(
                "reservation code key {} -> {}",
                fingerprint(&old.to_bytes()),
                fingerprint(&new.to_bytes())
            ));
        }
        Ok((!changed.is_empty()).then(|| format!("trust renewed: {}", changed.join(", "))))
    }

    /// As `show license status` shows it.
    pub(crate) fn to_pb(&self) -> pb::TrustInfo {
        pb::TrustInfo {
            authority_key: fingerprint(self.authority().as_bytes()),
            authority_pinned: self.pinned_authority.is_some(),
            codes_key: self
                .codes()
                .map(|k| fingerprint(&k.to_bytes()))
                .unwrap_or_default(),
            codes_pinned: self.pinned_codes.is_some(),
            differences: self.differences(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> VerifyingKey {
        entitle_proto::signing::generate_key()
            .expect("a key")
            .verifying_key()
    }

    fn trust(configured: VerifyingKey, store: &LocalStore) -> Trust {
        let mut trust = Trust {
            configured_authority: configured,
            configured_codes: None,
            pinned_authority: None,
            pinned_codes: None,
        };
        trust.pinned_authority = store
            .pinned_key("authority")
            .expect("read")
            .map(|b| entitle_proto::signing::verifying_key(&b).expect("a key"));
        trust
    }

    #[test]
    fn a_pinned_key_outlives_a_changed_configuration_until_trust_is_renewed() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = LocalStore::open(&dir.path().join("s.db")).expect("store");
        let (first, second) = (key(), key());

        let mut before = trust(first, &store);
        assert_eq!(before.authority(), first);
        assert!(before.pin_authority(&store).expect("pinned").is_some());
        assert!(before.pin_authority(&store).expect("once").is_none());

        // Restarted with another key configured: the pinned one still applies.
        let mut after = trust(second, &store);
        assert_eq!(after.authority(), first);
        let differences = after.differences();
        assert_eq!(differences.len(), 1);
        assert!(differences[0].contains(&fingerprint(second.as_bytes())));
        assert!(after.pin_authority(&store).expect("no-op").is_none());
        assert_eq!(after.authority(), first);

        let renewed = after.renew(&store).expect("renewed").expect("a change");
        assert!(
            renewed.contains(&fingerprint(first.as_bytes())),
            "{renewed}"
        );
        assert_eq!(after.authority(), second);
        assert!(after.differences().is_empty());
        assert!(after.renew(&store).expect("renewed").is_none());
        assert_eq!(trust(second, &store).authority(), second);
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint(b""), "e3b0c44298fc1c14");
    }
}
