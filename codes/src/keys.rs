//! The authority's code signing key and the verifying key devices hold: BLS12-381 in the
//! minimal-signature-size arrangement (signatures in G1, 48 bytes compressed; public keys
//! in G2, 96 bytes), through `blst`.
//!
//! One key signs every authorisation code, PLR and SLR, so a device needs one trust anchor
//! for codes. Messages are hashed to the curve with the standard ciphersuite
//! `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`; each kind of code puts its own domain tag
//! at the head of the message, so a signature for one kind never verifies as another.
//!
//! ```
//! use entitle_codes::{CodeSigningKey, CodeVerifyingKey};
//!
//! // In the authority the seed comes from the operating system's random source.
//! let key = CodeSigningKey::from_seed(&[7; 32]);
//! let public = key.verifying_key();
//! assert_eq!(CodeVerifyingKey::from_bytes(&public.to_bytes())?, public);
//! assert!(CodeVerifyingKey::from_bytes(&[0; 96]).is_err());
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use std::fmt;

use blst::BLST_ERROR;
use blst::min_sig::{PublicKey, SecretKey, Signature};

use super::error::{CodeError, Result};

/// The hash-to-curve domain of the minimal-signature-size basic scheme.
const DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// Bytes of a compressed signature.
pub(crate) const SIGNATURE_LEN: usize = 48;

/// Bytes of a compressed public key.
pub const VERIFYING_KEY_LEN: usize = 96;

/// The authority's secret key for signing codes. Its `Debug` shows only the public key.
#[derive(Clone)]
pub struct CodeSigningKey {
    secret: SecretKey,
}

impl CodeSigningKey {
    /// The key derived from 32 bytes of secret random input (the IETF BLS KeyGen).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = SecretKey::key_gen(seed, &[])
            .expect("blst key generation fails only for fewer than 32 bytes of input");
        Self { secret }
    }

    /// The key from the 32 bytes of [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        SecretKey::from_bytes(bytes)
            .map(|secret| Self { secret })
            .map_err(|_| CodeError::InvalidSigningKey)
    }

    /// The secret scalar, big-endian, for the key file. Secret: never log it.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public key that verifies this key's codes.
    pub fn verifying_key(&self) -> CodeVerifyingKey {
        CodeVerifyingKey {
            public: self.secret.sk_to_pk(),
        }
    }

    /// The compressed signature over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.secret.sign(message, DST, &[]).compress()
    }
}

impl fmt::Debug for CodeSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeSigningKey")
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// The public key a device holds to verify authorisation codes.
#[derive(Clone, Copy)]
pub struct CodeVerifyingKey {
    public: PublicKey,
}

impl CodeVerifyingKey {
    /// The key from its 96 compressed bytes, refusing bytes that are not a point of the
    /// right group (or the point at infinity, which would verify anything).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != VERIFYING_KEY_LEN {
            return Err(CodeError::InvalidVerifyingKey);
        }
        PublicKey::key_validate(bytes)
            .map(|public| Self { public })
            .map_err(|_| CodeError::InvalidVerifyingKey)
    }

    /// The 96 compressed bytes.
    pub fn to_bytes(&self) -> [u8; VERIFYING_KEY_LEN] {
        self.public.compress()
    }

    /// Whether `signature` is this key's signature over `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        // Both points were group-checked when made (signature_from_bytes, from_bytes).
        signature.verify(false, message, DST, &[], &self.public, false) == BLST_ERROR::BLST_SUCCESS
    }
}

impl PartialEq for CodeVerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for CodeVerifyingKey {}

impl fmt::Debug for CodeVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        write!(f, "CodeVerifyingKey(")?;
        for b in &bytes[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A compressed signature as a point of the signature group, or `None` when the bytes are
/// no such point (not on the curve, not in the group, or the point at infinity).
pub(crate) fn signature_from_bytes(bytes: &[u8; SIGNATURE_LEN]) -> Option<Signature> {
    Signature::sig_validate(bytes, true).ok()
}
