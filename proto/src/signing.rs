//! The signing rules both sides apply: signed envelopes, the registration proof, keys, and
//! the secret files that hold them.
//!
//! Signed messages are [`pb::Signed`] envelopes whose signature covers
//! [`signing_bytes`](crate::signing_bytes) of the body (see
//! `proto/entitle/v1/authority.proto`). Keys are Ed25519. Secret files are created with mode
//! 0600 and never logged.

use std::io::Write as _;
use std::path::Path;

use crate::{pb, signing_bytes};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use prost::Message;

/// The largest message either side decodes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The bytes a device signs to prove it holds the key it registers.
pub fn registration_proof_bytes(token: &str, udi: &pb::Udi, device_key: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in [
        token.as_bytes(),
        udi.product_id.as_bytes(),
        udi.serial.as_bytes(),
    ] {
        body.extend_from_slice(part);
        body.push(0);
    }
    body.extend_from_slice(device_key);
    signing_bytes("RegisterRequest", &body)
}

/// The bytes the key of a registration in contact signs to let a new key replace it: the
/// same parts as [`registration_proof_bytes`] (the new token, the UDI, the new key) under
/// another type name, so neither proof stands for the other.
pub fn replacement_proof_bytes(token: &str, udi: &pb::Udi, new_device_key: &[u8]) -> Vec<u8> {
    let mut body = registration_proof_bytes(token, udi, new_device_key);
    let prefix = signing_bytes("RegisterRequest", &[]).len();
    signing_bytes("RegisterReplace", &body.split_off(prefix))
}

/// Why a signed message was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature is not 64 bytes.
    #[error("the signature is malformed")]
    Malformed,
    /// The signature does not verify with the expected key.
    #[error("the signature does not verify")]
    Invalid,
    /// The body does not decode as the expected message.
    #[error("the signed body is not a valid {0}")]
    Body(&'static str),
    /// A public key that is not a valid Ed25519 key.
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    /// Signed by a satellite whose delegation is not signed by the trusted cloud key.
    #[error("signed by a satellite whose delegation the trusted authority did not sign")]
    UntrustedDelegation,
    /// Signed by a satellite whose delegation has expired.
    #[error("signed by satellite {satellite:?}, whose delegation expired at unix {expired_at}")]
    DelegationExpired {
        /// The satellite's name.
        satellite: String,
        /// When its delegation expired (unix seconds).
        expired_at: i64,
    },
    /// Signed by a satellite whose delegation the cloud revoked.
    #[error("signed by satellite {satellite:?}, whose delegation {serial} the cloud revoked")]
    DelegationRevoked {
        /// The satellite's name.
        satellite: String,
        /// The delegation's serial.
        serial: u64,
    },
    /// Signed by a satellite for an account its delegation does not name.
    #[error("satellite {satellite:?} is not delegated virtual account {account}")]
    NotDelegated {
        /// The satellite's name.
        satellite: String,
        /// The account, as `smart/virtual`.
        account: String,
    },
    /// Signed by another issuer than the one the device registered with.
    #[error("signed by {found}, but the device registered with {expected}")]
    OtherIssuer {
        /// Who signed.
        found: String,
        /// Who issued the device's certificate.
        expected: String,
    },
}

/// A signing key from its 32-byte seed (as a key file holds it).
pub fn signing_key(seed: &[u8]) -> Result<SigningKey, SignatureError> {
    let seed: [u8; 32] = seed.try_into().map_err(|_| SignatureError::BadKey)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new random signing key.
pub fn generate_key() -> std::io::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes)
}

/// Signs `message` as type `type_name` (its name within `entitle.v1`).
pub fn sign<M: Message>(key: &SigningKey, type_name: &str, message: &M) -> pb::Signed {
    let body = message.encode_to_vec();
    let signature = key.sign(&signing_bytes(type_name, &body));
    pb::Signed {
        body,
        signature: signature.to_bytes().to_vec(),
        ..Default::default()
    }
}

/// Checks the signature of `signed` as type `type_name` with `key`.
pub fn verify(
    key: &VerifyingKey,
    type_name: &str,
    signed: &pb::Signed,
) -> Result<(), SignatureError> {
    verify_raw(
        key,
        &signing_bytes(type_name, &signed.body),
        &signed.signature,
    )
}

/// Checks `signature` over `bytes`.
pub fn verify_raw(
    key: &VerifyingKey,
    bytes: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let signature = Signature::from_slice(signature).map_err(|_| SignatureError::Malformed)?;
    // Strict: no non-canonical signatures, no weak keys (belt and braces with
    // `verifying_key`).
    key.verify_strict(bytes, &signature)
        .map_err(|_| SignatureError::Invalid)
}

/// A verifying key screened once for batch verification: whether the batch equation agrees
/// with `verify_strict` for every signature it makes (a key neither weak nor with a torsion
/// part). The screen costs a scalar multiplication, so keep this beside a key that verifies
/// often, such as a device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchKey {
    key: VerifyingKey,
    batchable: bool,
}

impl BatchKey {
    /// Screens `key`.
    pub fn new(key: VerifyingKey) -> Self {
        let batchable = !key.is_weak() && key.to_edwards().is_torsion_free();
        Self { key, batchable }
    }

    /// The key itself.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl From<VerifyingKey> for BatchKey {
    fn from(key: VerifyingKey) -> Self {
        Self::new(key)
    }
}

/// Checks many signatures of type `type_name` at once: a batch verification, which costs
/// about half as much per signature, falling back to one by one to find a bad one.
///
/// As strict as [`verify_raw`]: the batch equation alone would accept what `verify_strict`
/// refuses (a weak key, a small-order or non-canonically encoded `R`), so each item is
/// screened first (its key too, once, in [`BatchKey`]); when one fails the screen, every
/// item is checked alone by the single path. What the screen leaves (an `R` with a torsion
/// part) can only be made by the key's holder, over its own message.
pub fn verify_all(
    type_name: &str,
    items: &[(BatchKey, &pb::Signed)],
) -> Vec<Result<(), SignatureError>> {
    let bytes: Vec<Vec<u8>> = items
        .iter()
        .map(|(_, s)| signing_bytes(type_name, &s.body))
        .collect();
    let signatures: Vec<Signature> = items
        .iter()
        .map_while(|(key, signed)| batchable(key, &signed.signature))
        .collect();
    let mut results: Vec<Option<Result<(), SignatureError>>> = vec![None; items.len()];
    if signatures.len() == items.len() && !items.is_empty() {
        let batch: Vec<_> = items
            .iter()
            .zip(&bytes)
            .zip(&signatures)
            .map(|(((key, _), bytes), signature)| (key.key(), bytes.as_slice(), signature))
            .collect();
        if batch_equation_holds(&batch) {
            results.iter_mut().for_each(|r| *r = Some(Ok(())));
        }
    }
    results
        .into_iter()
        .zip(items.iter().zip(&bytes))
        .map(|(done, ((key, s), b))| done.unwrap_or_else(|| verify_raw(&key.key, b, &s.signature)))
        .collect()
}

/// Whether the Ed25519 batch equation holds for `items` (key, signed bytes, signature):
/// for random 128-bit z_i and k_i = H(R_i || A_i || M_i),
/// sum z_i R_i + sum_A (sum of z_i k_i over A's signatures) A - (sum z_i s_i) B = 0.
///
/// The equation `ed25519_dalek::verify_batch` checks, with the terms of one key summed
/// before the multiplication: a usage stream's batch is one device's, so n signatures cost
/// n + 2 points in the multiscalar multiplication instead of 2n + 1, about half; that
/// crate keeps a term per signature. Alone this is not strict: screen the items first
/// (see [`batchable`]). An `R` not on the curve, or no randomness, answers false, and the
/// caller checks one by one.
fn batch_equation_holds(items: &[(&VerifyingKey, &[u8], &Signature)]) -> bool {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
    use curve25519_dalek::{Scalar, constants::ED25519_BASEPOINT_POINT};
    use sha2::{Digest as _, Sha512};

    let mut random = vec![0u8; 16 * items.len()];
    if getrandom::fill(&mut random).is_err() {
        return false;
    }
    let mut scalars = Vec::with_capacity(items.len() + 2);
    let mut points = Vec::with_capacity(items.len() + 2);
    let mut base = Scalar::ZERO;
    let mut keys: Vec<(&VerifyingKey, Scalar)> = Vec::new();
    for ((key, bytes, signature), z) in items.iter().zip(random.chunks_exact(16)) {
        let z = Scalar::from(u128::from_le_bytes(z.try_into().expect("16 bytes")));
        let Some(r) = CompressedEdwardsY(*signature.r_bytes()).decompress() else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        else {
            return false;
        };
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(signature.r_bytes())
                .chain_update(key.as_bytes())
                .chain_update(bytes)
                .finalize()
                .into(),
        );
        base += z * s;
        scalars.push(z);
        points.push(r);
        match keys.iter_mut().find(|(known, _)| known == key) {
            Some((_, sum)) => *sum += z * k,
            None => keys.push((key, z * k)),
        }
    }
    scalars.push(-base);
    points.push(ED25519_BASEPOINT_POINT);
    for (key, sum) in keys {
        scalars.push(sum);
        points.push(key.to_edwards());
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The signature, when `verify_strict` would not refuse it for its form or its key alone:
/// 64 bytes, a canonical `s`, a canonically encoded `R` that is not of small order, and a
/// screened key. `R` is judged from its bytes: decompressing it here as well as in the batch
/// cost a fifth of an authority's time under usage load. An `R` that is not on the curve at
/// all fails the batch, which then falls back to the single path.
fn batchable(key: &BatchKey, signature: &[u8]) -> Option<Signature> {
    if !key.batchable {
        return None;
    }
    let signature = Signature::from_slice(signature).ok()?;
    let s: [u8; 32] = *signature.s_bytes();
    Option::<curve25519_dalek::Scalar>::from(curve25519_dalek::Scalar::from_canonical_bytes(s))?;
    let r = signature.r_bytes();
    (canonical_point_encoding(r) && !small_order_encodings().contains(r)).then_some(signature)
}

/// Whether `bytes`, if they decode to a point, are the encoding that point compresses to:
/// `y` below p = 2^255 - 19, and no sign bit on a point with x = 0 (y = 1 or y = p - 1).
fn canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    let y_is_p_or_more = y[0] >= 0xed && y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_one = [0xffu8; 32];
    p_minus_one[0] = 0xec;
    p_minus_one[31] = 0x7f;
    let x_is_zero = y == one || y == p_minus_one;
    let sign = bytes[31] & 0x80 != 0;
    !(y_is_p_or_more || (sign && x_is_zero))
}

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: std::sync::OnceLock<[[u8; 32]; 8]> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|point| point.compress().to_bytes())
    })
}

/// Verifies `signed` and decodes its body as `M`, named `type_name`.
pub fn open<M: Message + Default>(
    key: &VerifyingKey,
    type_name: &'static str,
    signed: &pb::Signed,
) -> Result<M, SignatureError> {
    verify(key, type_name, signed)?;
    M::decode(signed.body.as_slice()).map_err(|_| SignatureError::Body(type_name))
}

/// Decodes the body of `signed` without checking its signature (to learn which key to check
/// it with).
pub fn peek<M: Message + Default>(
    type_name: &'static str,
    signed: &pb::Signed,
) -> Result<M, SignatureError> {
    M::decode(signed.body.as_slice()).map_err(|_| SignatureError::Body(type_name))
}

/// A public key from its 32 bytes. Refuses a weak (small-order) key: with one, a signature
/// made without any secret verifies, so whoever knew the instance could sign for it.
pub fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| SignatureError::BadKey)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::BadKey)?;
    if key.is_weak() {
        return Err(SignatureError::BadKey);
    }
    Ok(key)
}

/// Writes a new secret file with mode 0600; refuses to overwrite one.
pub fn write_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Replaces `path` with `contents` atomically: written to a temporary file beside it
/// (mode 0600), flushed to disk, renamed over `path`, and the directory flushed. A crash
/// leaves either the old file or the new one, never a partial one at `path`.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp = dir.map_or_else(|| temp_name.clone().into(), |d| d.join(&temp_name));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    #[cfg(unix)]
    if let Some(dir) = dir {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a secret file, refusing one that others can read.
pub fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: with it, the signature (R = identity, s = 0) verifies any
        // message without a secret.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(verifying_key(&identity), Err(SignatureError::BadKey));
        let forged = [identity, [0u8; 32]].concat();
        let key = VerifyingKey::from_bytes(&identity).unwrap();
        assert_eq!(
            verify_raw(&key, b"anything", &forged),
            Err(SignatureError::Invalid)
        );
        let real = generate_key().unwrap().verifying_key();
        assert_eq!(verifying_key(real.as_bytes()), Ok(real));
    }

    #[test]
    fn a_signature_binds_the_type_and_every_byte() {
        let key = generate_key().unwrap();
        let report = pb::UsageReport {
            instance_id: "i-1".into(),
            sequence: 7,
            ..Default::default()
        };
        let signed = sign(&key, "UsageReport", &report);
        let public = key.verifying_key();
        assert_eq!(
            open::<pb::UsageReport>(&public, "UsageReport", &signed),
            Ok(report)
        );
        assert_eq!(
            verify(&public, "AuthorizeBody", &signed),
            Err(SignatureError::Invalid),
            "another type"
        );
        for i in 0..signed.body.len() {
            let mut tampered = signed.clone();
            tampered.body[i] ^= 1;
            assert_eq!(
                verify(&public, "UsageReport", &tampered),
                Err(SignatureError::Invalid)
            );
        }
        let other = generate_key().unwrap().verifying_key();
        assert_eq!(
            verify(&other, "UsageReport", &signed),
            Err(SignatureError::Invalid)
        );
        let short = pb::Signed {
            body: signed.body.clone(),
            signature: vec![1, 2, 3],
            ..Default::default()
        };
        assert_eq!(
            verify(&public, "UsageReport", &short),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verifying_key(&[0u8; 31]).err(),
            Some(SignatureError::BadKey)
        );
    }

    #[test]
    fn a_batch_finds_the_one_bad_signature() {
        let key = generate_key().unwrap();
        let signed: Vec<_> = (1..=10u64)
            .map(|sequence| {
                sign(
                    &key,
                    "UsageReport",
                    &pb::UsageReport {
                        sequence,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let public = BatchKey::new(key.verifying_key());
        let mut items: Vec<_> = signed.iter().map(|s| (public, s)).collect();
        assert!(verify_all("UsageReport", &items).iter().all(Result::is_ok));
        let forged = sign(
            &generate_key().unwrap(),
            "UsageReport",
            &pb::UsageReport::default(),
        );
        items[6] = (public, &forged);
        let results = verify_all("UsageReport", &items);
        let bad: Vec<_> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, [6]);
    }

    #[test]
    fn a_batch_is_as_strict_as_the_single_path() {
        let key = generate_key().unwrap();
        let public = BatchKey::new(key.verifying_key());
        let good: Vec<_> = (1..=3u64)
            .map(|sequence| {
                sign(
                    &key,
                    "UsageReport",
                    &pb::UsageReport {
                        sequence,
                        ..Default::default()
                    },
                )
            })
            .collect();
        // The identity as a weak key, and a "signature" made without any secret: R is the
        // identity too (once canonically encoded, once as y = p + 1), s = 0. The batch
        // equation alone holds for both; verify_strict refuses them.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let weak_batch = BatchKey::new(weak);
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        let forged_body = pb::UsageReport::default().encode_to_vec();
        for r in [identity, non_canonical] {
            let forged = pb::Signed {
                body: forged_body.clone(),
                signature: [r, [0u8; 32]].concat(),
                ..Default::default()
            };
            let forged_bytes = signing_bytes("UsageReport", &forged.body);
            let forged_signature = Signature::from_slice(&forged.signature).unwrap();
            assert!(
                batch_equation_holds(&[(&weak, &forged_bytes, &forged_signature)]),
                "the batch equation alone takes it"
            );
            assert_eq!(
                verify(&weak, "UsageReport", &forged),
                Err(SignatureError::Invalid)
            );
            let mut items: Vec<_> = good.iter().map(|s| (public, s)).collect();
            items.insert(1, (weak_batch, &forged));
            let results = verify_all("UsageReport", &items);
            assert_eq!(
                results,
                [Ok(()), Err(SignatureError::Invalid), Ok(()), Ok(())],
                "R = {r:02x?}"
            );
            assert_eq!(
                verify_all("UsageReport", &[(weak_batch, &forged)]),
                [Err(SignatureError::Invalid)]
            );
        }
        // A non-canonical s (s + l) with a real key is refused in a batch too.
        let mut high = good[0].clone();
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (i, byte) in l.iter().enumerate() {
            let sum = u16::from(high.signature[32 + i]) + u16::from(*byte) + carry;
            high.signature[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let items: Vec<_> = [&good[1], &high, &good[2]]
            .into_iter()
            .map(|s| (public, s))
            .collect();
        let results = verify_all("UsageReport", &items);
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].is_err(), "s + l must be refused: {results:?}");
        assert!(verify_all("UsageReport", &[]).is_empty());
    }

    /// The batch equation with the terms of a key summed: true for good signatures of
    /// several keys interleaved, false once any one of them is wrong in any part.
    #[test]
    fn the_batch_equation_holds_for_good_signatures_only() {
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|seed| signing_key(&[seed; 32]).unwrap())
            .collect();
        let public: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        let messages: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 40]).collect();
        let signatures: Vec<Signature> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 3].sign(m))
            .collect();
        let items = |key_of: &dyn Fn(usize) -> usize, message_of: &dyn Fn(usize) -> usize| {
            (0..9)
                .map(|i| {
                    (
                        &public[key_of(i)],
                        messages[message_of(i)].as_slice(),
                        &signatures[i],
                    )
                })
                .collect::<Vec<_>>()
        };
        assert!(batch_equation_holds(&items(&|i| i % 3, &|i| i)));
        assert!(batch_equation_holds(&items(&|i| i % 3, &|i| i)[..1]));
        // One signature credited to another key, or over another message.
        assert!(!batch_equation_holds(&items(
            &|i| if i == 4 { 2 } else { i % 3 },
            &|i| i
        )));
        assert!(!batch_equation_holds(&items(&|i| i % 3, &|i| if i == 7 {
            8
        } else {
            i
        })));
        // Two signatures of one key swapped between its messages.
        assert!(!batch_equation_holds(&items(&|i| i % 3, &|i| match i {
            0 => 3,
            3 => 0,
            i => i,
        })));
        assert!(batch_equation_holds(&[]));
    }

    /// The screen of `R` from its bytes agrees with decompressing and compressing it again:
    /// for the points of small order, every non-canonical encoding there is (y + p, and a
    /// sign bit on x = 0), and ordinary points with and without their sign bit.
    #[test]
    fn the_screen_of_r_from_bytes_agrees_with_decompressing_it() {
        let by_decompressing = |bytes: &[u8; 32]| {
            curve25519_dalek::edwards::CompressedEdwardsY(*bytes)
                .decompress()
                .map(|r| r.compress().to_bytes() == *bytes && !r.is_small_order())
        };
        let by_bytes = |bytes: &[u8; 32]| {
            canonical_point_encoding(bytes) && !small_order_encodings().contains(bytes)
        };
        let mut encodings: Vec<[u8; 32]> = small_order_encodings().to_vec();
        // y = p + k for every k that fits below 2^255, each with either sign bit.
        for k in 0u8..19 {
            let mut y = [0xffu8; 32];
            y[0] = 0xed + k;
            y[31] = 0x7f;
            encodings.push(y);
            y[31] |= 0x80;
            encodings.push(y);
        }
        // y = k for small k (a few of them on the curve), either sign bit.
        for k in 0u8..=255 {
            let mut y = [0u8; 32];
            y[0] = k;
            encodings.push(y);
            y[31] = 0x80;
            encodings.push(y);
        }
        for seed in 0u8..64 {
            let r = signing_key(&[seed; 32]).unwrap().verifying_key().to_bytes();
            encodings.push(r);
            let mut flipped = r;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        let mut on_curve = 0;
        let mut refused = 0;
        for bytes in &encodings {
            if let Some(expected) = by_decompressing(bytes) {
                on_curve += 1;
                refused += usize::from(!expected);
                assert_eq!(by_bytes(bytes), expected, "R = {bytes:02x?}");
            }
        }
        // The cases are there: the 8 of small order and their non-canonical twins.
        assert!(on_curve > 150, "{on_curve} encodings were on the curve");
        assert!(refused >= 8 + 4, "{refused} refused");
    }

    #[test]
    fn secret_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_secret(&path, b"secret").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert!(write_secret(&path, b"again").is_err());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read_secret(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
