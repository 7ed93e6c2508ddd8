//! The `envelope` target's world and checks: signed envelopes and the device messages they
//! carry, opened with a key whose secret the fuzzer never sees.
//!
//! Ed25519 signing is deterministic and `ed25519-dalek`'s `verify` refuses a non-canonical
//! `s` or `R`, so a message has exactly one signature that verifies with a given key: the one
//! its secret makes. That gives an exact oracle: whatever verifies must be that signature.

use std::fmt::Debug;
use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use entitle_proto::{pb, signing_bytes};
use prost::Message;

use crate::crypto::{self, SignatureError};

/// The device-facing messages, by the type name they are signed under; `check` picks one
/// by index.
pub const TYPE_NAMES: [&str; 5] = [
    "RegisterRequest",
    "UsageReport",
    "AuthorizeBody",
    "RenewIdBody",
    "DeregisterBody",
];

/// The keys of the target.
pub struct Keys {
    /// The key whose public half the checks open envelopes with.
    pub trusted: SigningKey,
    /// Another signer, whose envelopes must not open with the trusted key.
    pub stranger: SigningKey,
}

/// The keys, made once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        trusted: SigningKey::from_bytes(&[0x3C; 32]),
        stranger: SigningKey::from_bytes(&[0xC3; 32]),
    })
}

/// `body` signed by `key` as `type_name`, the bytes as given (not a re-encoding).
pub fn seal(key: &SigningKey, type_name: &str, body: Vec<u8>) -> pb::Signed {
    let signature = key
        .sign(&signing_bytes(type_name, &body))
        .to_bytes()
        .to_vec();
    pb::Signed {
        body,
        signature,
        ..Default::default()
    }
}

/// Runs every check on one input: `[pick, batch, rest...]`. `rest` is decoded as an
/// envelope and as each message; `pick` chooses the message type of the envelopes the
/// checks sign themselves, `batch` which of them go into the batch verification.
pub fn check(data: &[u8]) {
    let Some((&[pick, batch], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let k = keys();
    let (trusted, stranger) = (k.trusted.verifying_key(), k.stranger.verifying_key());

    round_trip::<pb::Signed>(rest);
    round_trip::<pb::RegisterRequest>(rest);
    round_trip::<pb::UsageReport>(rest);
    round_trip::<pb::AuthorizeBody>(rest);
    round_trip::<pb::RenewIdBody>(rest);
    round_trip::<pb::DeregisterBody>(rest);

    // The envelope as it came: it opens as any type only with the signature its secret makes.
    let signed = pb::Signed::decode(rest).ok();
    if let Some(s) = &signed {
        for index in 0..TYPE_NAMES.len() {
            open_as(index, &k.trusted, s);
        }
        open_as(usize::from(pick) % TYPE_NAMES.len(), &k.stranger, s);
    }

    // An envelope the trusted key did sign, over the input's body (or the input itself).
    let index = usize::from(pick) % TYPE_NAMES.len();
    let type_name = TYPE_NAMES[index];
    let body = signed
        .as_ref()
        .map_or_else(|| rest.to_vec(), |s| s.body.clone());
    let genuine = seal(&k.trusted, type_name, body.clone());
    assert!(open_as(index, &k.trusted, &genuine), "a genuine envelope");
    let other = (index + 1) % TYPE_NAMES.len();
    assert!(
        !open_as(other, &k.trusted, &genuine),
        "a {type_name} signature opened a {}",
        TYPE_NAMES[other]
    );

    // Each change of a genuine envelope must be refused.
    let at = rest.iter().fold(usize::from(pick), |h, &b| {
        h.wrapping_mul(31) ^ usize::from(b)
    });
    let mut changed = Vec::new();
    if !body.is_empty() {
        let mut flipped = genuine.clone();
        flipped.body[(at / 8) % body.len()] ^= 1 << (at % 8);
        let mut shorter = genuine.clone();
        shorter.body.pop();
        changed.extend([("a bit of the body", flipped), ("the body cut", shorter)]);
    }
    let mut flipped = genuine.clone();
    flipped.signature[(at / 8) % 64] ^= 1 << (at % 8);
    // Bytes appended to the body (the fuzzer's, or a field no device message has, which the
    // decoder skips): the body may read as the same message, but it is not the signed one.
    let tail = match &signed {
        Some(s) if !s.signature.is_empty() => s.signature.clone(),
        _ => vec![at as u8],
    };
    let mut longer = genuine.clone();
    longer.body.extend_from_slice(&tail);
    let mut unknown = genuine.clone();
    let field = 16 + (at % 2000) as u64;
    prost::encoding::encode_varint(field << 3, &mut unknown.body);
    prost::encoding::encode_varint((at % 128) as u64, &mut unknown.body);
    let stranger_signed = seal(&k.stranger, type_name, body);
    assert!(open_as(index, &k.stranger, &stranger_signed));
    changed.extend([
        ("a bit of the signature", flipped),
        ("the body extended", longer),
        ("the body with an unknown field", unknown),
        ("the stranger's signature", stranger_signed.clone()),
    ]);
    for (change, envelope) in &changed {
        assert!(
            !open_as(index, &k.trusted, envelope),
            "{change} still opened as {type_name}"
        );
    }

    // A batch of them: the batch verification must answer what one-by-one does.
    let mut candidates: Vec<(VerifyingKey, &pb::Signed)> =
        vec![(trusted, &genuine), (stranger, &stranger_signed)];
    candidates.extend(changed.iter().map(|(_, e)| (trusted, e)));
    if let Some(s) = &signed {
        candidates.push((trusted, s));
    }
    let items: Vec<_> = candidates
        .into_iter()
        .enumerate()
        .filter(|(i, _)| batch & (1 << (i % 8)) != 0)
        .map(|(_, item)| item)
        .collect();
    let one_by_one: Vec<_> = items
        .iter()
        .map(|(key, s)| crypto::verify(key, type_name, s))
        .collect();
    let screened: Vec<_> = items
        .iter()
        .map(|(key, s)| (crypto::BatchKey::new(*key), *s))
        .collect();
    assert_eq!(
        crypto::verify_all(type_name, &screened),
        one_by_one,
        "the batch disagrees with one-by-one verification"
    );

    // Public keys from outside: 32 bytes or refused, and kept as given.
    match crypto::verifying_key(rest) {
        Ok(key) => assert_eq!(key.as_bytes().as_slice(), rest),
        Err(e) => assert_eq!(e, SignatureError::BadKey),
    }
    if let Some(bytes) = rest.get(..32)
        && let Ok(key) = crypto::verifying_key(bytes)
    {
        assert_eq!(key.as_bytes().as_slice(), bytes);
        if let Some(s) = &signed {
            // Any key may be given, weak ones too: nothing to assert but that it returns.
            let _ = crypto::verify(&key, type_name, s);
        }
    }
    if let Ok(request) = pb::RegisterRequest::decode(rest)
        && let Ok(key) = crypto::verifying_key(&request.device_public_key)
    {
        assert_eq!(key.as_bytes().as_slice(), request.device_public_key);
    }
}

/// Whatever decodes re-encodes to bytes that decode to the same message.
fn round_trip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(message) = M::decode(bytes) {
        let encoded = message.encode_to_vec();
        assert_eq!(encoded.len(), message.encoded_len());
        let again = M::decode(encoded.as_slice()).expect("a re-encoding decodes");
        assert_eq!(again, message);
    }
}

/// Opens `signed` as the `index`th of [`TYPE_NAMES`] with `key`'s public half, checking
/// `open` against `verify` and `peek`; returns whether it opened.
pub fn open_as(index: usize, key: &SigningKey, signed: &pb::Signed) -> bool {
    match index {
        0 => open_checked::<pb::RegisterRequest>(TYPE_NAMES[0], key, signed),
        1 => open_checked::<pb::UsageReport>(TYPE_NAMES[1], key, signed),
        2 => open_checked::<pb::AuthorizeBody>(TYPE_NAMES[2], key, signed),
        3 => open_checked::<pb::RenewIdBody>(TYPE_NAMES[3], key, signed),
        _ => open_checked::<pb::DeregisterBody>(TYPE_NAMES[4], key, signed),
    }
}

fn open_checked<M: Message + Default + PartialEq + Debug>(
    type_name: &'static str,
    key: &SigningKey,
    signed: &pb::Signed,
) -> bool {
    let public = key.verifying_key();
    let opened = crypto::open::<M>(&public, type_name, signed);
    let peeked = crypto::peek::<M>(type_name, signed);
    // `open` is exactly: the signature verifies, then the body decodes. A second
    // verification is paid only where `open` let the signature pass (the common refusal
    // stays one verification, which keeps the target's rate up).
    let verified = match &opened {
        Err(e @ (SignatureError::Malformed | SignatureError::Invalid)) => Err(e.clone()),
        _ => crypto::verify(&public, type_name, signed),
    };
    assert_eq!(opened, verified.clone().and(peeked));
    if verified.is_ok() {
        let made = key.sign(&signing_bytes(type_name, &signed.body)).to_bytes();
        assert_eq!(
            signed.signature.as_slice(),
            made.as_slice(),
            "a {type_name} signature its key never made verified"
        );
    }
    if signed.signature.len() != 64 {
        assert_eq!(verified, Err(SignatureError::Malformed));
    }
    verified.is_ok()
}
