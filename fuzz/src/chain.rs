//! The `chain` target's world and checks: the delegation chain through a satellite
//! (`entitle_proto::delegation`), the cloud's revocation lists, and the sync messages that
//! carry them, with a cloud key and a satellite key whose secrets the fuzzer never sees.
//!
//! The oracle is the one of the `envelope` target, one level up: Ed25519 signing is
//! deterministic and `verify_strict` refuses non-canonical signatures, so whatever verifies
//! with a key is a (body, signature) pair its secret made, and this module made them all
//! (recorded in [`World::genuine`]). Whatever `open` lets through must therefore be a chain
//! this module built: a cloud-signed delegation, unexpired and unrevoked, over a body signed
//! by the key it names; and `Revocations::learn` takes only a cloud-signed list, newer than
//! the one held.
//!
//! Inputs are `[mode, rest...]`, `mode % 3` choosing:
//! - 0: `rest` is an envelope `pb::Signed`, opened as an `Authorization`;
//! - 1: `rest` is a `pb::SyncFile`, its envelope opened as a `SyncRequest` and a `SyncAnswer`;
//! - 2: `rest` edits the encoded bytes of the genuine envelope [`World::variants`]
//!   `[mode / 3 % len]`: 3-byte edits `(position u16 LE, xor)`, a 1- or 2-byte remainder
//!   cutting that many bytes off the end; whatever opens must be that genuine envelope.
//!
//! Every mode also decodes `rest` as each message of the chain (never panics, round-trips).

use std::fmt::Debug;
use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use entitle_proto::delegation::{self, Issuer, Revocations};
use entitle_proto::{pb, signing_bytes};
use prost::Message;

use crate::crypto::{self, SignatureError};

/// The unix second every check runs at.
pub const NOW: i64 = 1_750_000_000;

/// The envelope type the device-facing modes open.
const AUTHORIZATION: &str = "Authorization";

/// Who made a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The cloud: the key devices trust.
    Cloud,
    /// The satellite its delegations name.
    Satellite,
    /// A key nobody delegated.
    Stranger,
    /// A device (its usage reports travel in sync requests).
    Device,
}

/// What opening a genuine envelope, as built, answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Opens, signed by the satellite through its delegation.
    Satellite,
    /// Opens, signed by the cloud.
    Cloud,
    /// Refused with this error.
    Refused(SignatureError),
}

/// One genuine envelope of the mutation mode.
pub struct Variant {
    /// What it shows.
    pub name: &'static str,
    /// The envelope.
    pub signed: pb::Signed,
    /// Its encoding, which the mutation mode edits.
    pub bytes: Vec<u8>,
    /// What opening it answers (after learning its own revocation list).
    pub expect: Expect,
    /// Whether any edit of it may open at all (no edit may revive an expired or forged
    /// chain).
    pub may_open: bool,
}

/// The fixed world of the target.
pub struct World {
    /// The cloud key: the trust anchor of every check.
    pub cloud: SigningKey,
    /// The satellite key the genuine delegations name.
    pub satellite: SigningKey,
    /// A key that signs forgeries.
    pub stranger: SigningKey,
    /// The device whose usage report a sync request carries.
    pub device: SigningKey,
    /// Every (signer, type, body, signature) this module made: the only signatures that may
    /// verify.
    pub genuine: Vec<(Who, &'static str, Vec<u8>, Vec<u8>)>,
    /// The genuine envelopes the mutation mode edits.
    pub variants: Vec<Variant>,
    /// A genuine sync request (satellite-signed, its delegation attached) and answer
    /// (cloud-signed), as files.
    pub sync_files: Vec<pb::SyncFile>,
    /// Revocations as a device holds them after learning the version-5 list.
    pub primed: Revocations,
}

impl World {
    fn key(&self, who: Who) -> &SigningKey {
        match who {
            Who::Cloud => &self.cloud,
            Who::Satellite => &self.satellite,
            Who::Stranger => &self.stranger,
            Who::Device => &self.device,
        }
    }

    /// `message` signed by `who` as `type_name`, recorded with its signer.
    fn sign<M: Message>(&mut self, who: Who, type_name: &'static str, message: &M) -> pb::Signed {
        let body = message.encode_to_vec();
        let signature = self
            .key(who)
            .sign(&signing_bytes(type_name, &body))
            .to_bytes()
            .to_vec();
        self.genuine
            .push((who, type_name, body.clone(), signature.clone()));
        pb::Signed {
            body,
            signature,
            ..Default::default()
        }
    }

    /// Whether `signed` is a signature `who` made as `type_name` (here, in this module).
    pub fn is_genuine(&self, who: Who, type_name: &str, signed: &pb::Signed) -> bool {
        self.genuine.iter().any(|(w, t, body, signature)| {
            *w == who && *t == type_name && *body == signed.body && *signature == signed.signature
        })
    }
}

/// The world, made (and checked) once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut w = World {
            cloud: SigningKey::from_bytes(&[0xC1; 32]),
            satellite: SigningKey::from_bytes(&[0x5E; 32]),
            stranger: SigningKey::from_bytes(&[0x57; 32]),
            device: SigningKey::from_bytes(&[0xDE; 32]),
            genuine: Vec::new(),
            variants: Vec::new(),
            sync_files: Vec::new(),
            primed: Revocations::default(),
        };
        build(&mut w);
        self_check(&w);
        w
    })
}

fn account(sa: &str, va: &str) -> pb::AccountName {
    pb::AccountName {
        smart_account: sa.into(),
        virtual_account: va.into(),
    }
}

fn grant(satellite: &SigningKey, serial: u64, expires_at: i64) -> pb::Delegation {
    pb::Delegation {
        serial,
        satellite: "site-a".into(),
        satellite_public_key: satellite.verifying_key().to_bytes().to_vec(),
        accounts: vec![account("acme", "core"), account("acme", "edge")],
        issued_at: NOW - 86_400,
        expires_at,
    }
}

fn list(version: u64, serials: &[u64]) -> pb::RevocationList {
    pb::RevocationList {
        version,
        serials: serials.to_vec(),
        issued_at: NOW - 100,
    }
}

fn with(
    mut signed: pb::Signed,
    delegation: Option<&pb::Signed>,
    revocations: Option<&pb::Signed>,
) -> pb::Signed {
    signed.delegation = delegation.cloned().map(Box::new);
    signed.revocations = revocations.cloned().map(Box::new);
    signed
}

fn build(w: &mut World) {
    use Who::{Cloud, Satellite, Stranger};

    let authorization = pb::Authorization {
        instance_id: "5c1e0f3a9b7d4e21a0c6d8f2b3e4a5c6".into(),
        grants: vec![pb::Grant {
            tag: "PAR-TPS".into(),
            requested: 300,
            granted: 300,
            status: 1,
            tps_per_unit: 100,
            policy: 1,
        }],
        issued_at: NOW,
        next_renewal_at: NOW + 3_600,
        deadline_at: NOW + 7_200,
        counter: 9,
    };
    let live = grant(&w.satellite, 7, NOW + 86_400);
    let delegation = w.sign(Cloud, "Delegation", &live);
    // Expired at the very second of the checks.
    let expired = w.sign(Cloud, "Delegation", &grant(&w.satellite, 8, NOW));
    let renewed = w.sign(
        Cloud,
        "Delegation",
        &grant(&w.satellite, 10, NOW + 2 * 86_400),
    );
    let forged = w.sign(Stranger, "Delegation", &live);
    let list_v2 = w.sign(Cloud, "RevocationList", &list(2, &[3]));
    let list_v5 = w.sign(Cloud, "RevocationList", &list(5, &[3, 9]));
    let list_v6 = w.sign(Cloud, "RevocationList", &list(6, &[3, 7, 9]));
    let list_stranger = w.sign(Stranger, "RevocationList", &list(9, &[7]));
    let by_satellite = w.sign(Satellite, AUTHORIZATION, &authorization);
    let by_cloud = w.sign(Cloud, AUTHORIZATION, &authorization);
    let by_stranger = w.sign(Stranger, AUTHORIZATION, &authorization);

    let revoked = SignatureError::DelegationRevoked {
        satellite: "site-a".into(),
        serial: 7,
    };
    let lapsed = SignatureError::DelegationExpired {
        satellite: "site-a".into(),
        expired_at: NOW,
    };
    let d = Some(&delegation);
    let table = [
        (
            "chained",
            with(by_satellite.clone(), d, None),
            Expect::Satellite,
            true,
        ),
        (
            "chained, list v5",
            with(by_satellite.clone(), d, Some(&list_v5)),
            Expect::Satellite,
            true,
        ),
        (
            "chained, revoked by its list",
            with(by_satellite.clone(), d, Some(&list_v6)),
            Expect::Refused(revoked),
            true,
        ),
        (
            "chained, list v2",
            with(by_satellite.clone(), d, Some(&list_v2)),
            Expect::Satellite,
            true,
        ),
        (
            "chained, stranger's list",
            with(by_satellite.clone(), d, Some(&list_stranger)),
            Expect::Satellite,
            true,
        ),
        (
            "expired",
            with(by_satellite.clone(), Some(&expired), Some(&list_v5)),
            Expect::Refused(lapsed),
            false,
        ),
        (
            "forged delegation",
            with(by_satellite.clone(), Some(&forged), None),
            Expect::Refused(SignatureError::UntrustedDelegation),
            false,
        ),
        (
            "borrowed delegation",
            with(by_stranger, d, None),
            Expect::Refused(SignatureError::Invalid),
            false,
        ),
        (
            "satellite alone",
            by_satellite.clone(),
            Expect::Refused(SignatureError::Invalid),
            false,
        ),
        (
            "a delegation as an authorisation",
            delegation.clone(),
            Expect::Refused(SignatureError::Invalid),
            false,
        ),
        ("cloud", by_cloud.clone(), Expect::Cloud, true),
        (
            "cloud, list v6",
            with(by_cloud, None, Some(&list_v6)),
            Expect::Cloud,
            true,
        ),
    ];
    w.variants = table
        .into_iter()
        .map(|(name, signed, expect, may_open)| Variant {
            name,
            bytes: signed.encode_to_vec(),
            signed,
            expect,
            may_open,
        })
        .collect();

    let report = pb::UsageReport {
        instance_id: "5c1e0f3a9b7d4e21a0c6d8f2b3e4a5c6".into(),
        sequence: 42,
        window_start: (NOW - 60) * 1000,
        window_end: NOW * 1000,
        usage: vec![pb::EntitlementUsage {
            tag: "PAR-TPS".into(),
            admitted: 17_940,
            rejected: 12,
            peak_tps: 301,
            tps_histogram: vec![0x1c, 0x84, 0x93, 0x14],
        }],
    };
    let request = pb::SyncRequest {
        satellite: "site-a".into(),
        delegation_serial: 7,
        sequence: 3,
        created_at: NOW,
        instances: vec![pb::SatelliteInstance {
            instance_id: "5c1e0f3a9b7d4e21a0c6d8f2b3e4a5c6".into(),
            udi: Some(pb::Udi {
                product_id: "CPAR".into(),
                serial: "FCH2144V1AB".into(),
            }),
            account: Some(account("acme", "core")),
            device_public_key: w.device.verifying_key().to_bytes().to_vec(),
            export_controlled: true,
            registered_at: NOW - 3_600,
            last_contact: NOW - 60,
            deadline_at: NOW + 86_400,
            granted: vec![pb::LicenseCount {
                tag: "PAR-TPS".into(),
                count: 300,
            }],
            cert_serial: 12,
            cert_expires_at: NOW + 365 * 86_400,
            ..Default::default()
        }],
        reports: vec![w.sign(Who::Device, "UsageReport", &report)],
        reservations: vec![pb::QueuedReservation {
            id: 1,
            return_code: "RET1.example".into(),
            ..Default::default()
        }],
    };
    let answer = pb::SyncAnswer {
        satellite: "site-a".into(),
        sequence: 3,
        issued_at: NOW,
        accounts: vec![pb::SyncAccount {
            name: Some(account("acme", "core")),
            plr_authorized: true,
            export_controlled: true,
            created_at: NOW - 86_400,
        }],
        pools: vec![pb::SyncPool {
            account: Some(account("acme", "core")),
            tag: "PAR-TPS".into(),
            term_end: NOW + 365 * 86_400,
            quantity: 1_000,
            plr_capable: true,
        }],
        tokens: vec![pb::SyncToken {
            id: "3f2a9c01b7de".into(),
            secret_hash: vec![0xAB; 32],
            account: Some(account("acme", "edge")),
            created_at: NOW - 100,
            expires_at: NOW + 86_400,
            max_uses: 10,
            ..Default::default()
        }],
        catalogue: vec![pb::CatalogueEntry {
            tag: "PAR-TPS".into(),
            tps_per_unit: 100,
            policy: 1,
        }],
        acknowledged: vec![pb::UsageAck {
            instance_id: "5c1e0f3a9b7d4e21a0c6d8f2b3e4a5c6".into(),
            sequence: 42,
            ..Default::default()
        }],
        refused: vec![pb::ReportRefusal {
            instance_id: "0000".into(),
            sequence: 1,
            reason: "no such instance".into(),
        }],
        delegation: Some(renewed),
        revocations: Some(list_v6),
        reservations: vec![pb::ReservationResult {
            id: 1,
            refusal: "no such reservation".into(),
            ..Default::default()
        }],
    };
    let request = with(
        w.sign(Satellite, "SyncRequest", &request),
        d,
        Some(&list_v5),
    );
    let answer = with(w.sign(Cloud, "SyncAnswer", &answer), None, Some(&list_v5));
    w.sync_files = vec![
        pb::SyncFile {
            content: Some(pb::sync_file::Content::Request(request)),
        },
        pb::SyncFile {
            content: Some(pb::sync_file::Content::Answer(answer)),
        },
    ];
    let cloud = w.cloud.verifying_key();
    assert!(w.primed.learn(&cloud, Some(&list_v5)));
}

/// The world's genuine envelopes answer what they were built to, through the checks.
fn self_check(w: &World) {
    for v in &w.variants {
        let mut revocations = Revocations::default();
        learn_checked(w, &mut revocations, v.signed.revocations.as_deref());
        let opened = open_checked::<pb::Authorization>(w, AUTHORIZATION, &v.signed, &revocations);
        let got = match opened {
            Ok((_, Issuer::Cloud)) => Expect::Cloud,
            Ok((_, Issuer::Satellite(_))) => Expect::Satellite,
            Err(e) => Expect::Refused(e),
        };
        assert_eq!(got, v.expect, "the genuine envelope {:?}", v.name);
        assert!(v.may_open || !matches!(v.expect, Expect::Satellite | Expect::Cloud));
    }
    let [request, answer] = [0, 1].map(|i| {
        let Some(pb::sync_file::Content::Request(s) | pb::sync_file::Content::Answer(s)) =
            &w.sync_files[i].content
        else {
            unreachable!()
        };
        let mut revocations = Revocations::default();
        learn_checked(w, &mut revocations, s.revocations.as_deref());
        (s, revocations)
    });
    assert!(matches!(
        open_checked::<pb::SyncRequest>(w, "SyncRequest", request.0, &request.1),
        Ok((_, Issuer::Satellite(_)))
    ));
    assert!(matches!(
        open_checked::<pb::SyncAnswer>(w, "SyncAnswer", answer.0, &answer.1),
        Ok((_, Issuer::Cloud))
    ));
    assert!(open_checked::<pb::SyncAnswer>(w, "SyncAnswer", request.0, &request.1).is_err());
    assert!(open_checked::<pb::SyncRequest>(w, "SyncRequest", answer.0, &answer.1).is_err());
    assert_eq!(w.primed.version(), 5);
}

/// Runs every check on one input; see the module comment for its form.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let w = world();

    round_trip::<pb::Signed>(rest);
    round_trip::<pb::SyncFile>(rest);
    round_trip::<pb::SyncRequest>(rest);
    round_trip::<pb::SyncAnswer>(rest);
    round_trip::<pb::Delegation>(rest);
    round_trip::<pb::RevocationList>(rest);

    match mode % 3 {
        0 => {
            if let Ok(signed) = pb::Signed::decode(rest) {
                let _ = check_envelope(w, &signed);
            }
        }
        1 => {
            if let Ok(file) = pb::SyncFile::decode(rest) {
                check_sync_file(w, &file);
            }
        }
        _ => {
            let variant = &w.variants[usize::from(mode / 3) % w.variants.len()];
            check_mutated(w, variant, rest);
        }
    }
}

/// An envelope from outside, as a device opens it: learns its revocation list (fresh, and
/// over the held version-5 list), then opens it as an authorisation.
fn check_envelope(
    w: &World,
    signed: &pb::Signed,
) -> Result<(pb::Authorization, Issuer), SignatureError> {
    let mut primed = w.primed.clone();
    learn_checked(w, &mut primed, signed.revocations.as_deref());
    let mut revocations = Revocations::default();
    learn_checked(w, &mut revocations, signed.revocations.as_deref());
    if let Some(d) = signed.delegation.as_deref() {
        delegation_checked(w, d, &primed);
    }
    open_checked::<pb::Authorization>(w, AUTHORIZATION, signed, &revocations)
}

/// A sync file from outside: its envelope opens only as what its signer signed it as, and
/// what an answer carries (a renewed delegation, a revocation list) is checked as a
/// satellite would.
fn check_sync_file(w: &World, file: &pb::SyncFile) {
    let Some(pb::sync_file::Content::Request(signed) | pb::sync_file::Content::Answer(signed)) =
        &file.content
    else {
        return;
    };
    let mut revocations = Revocations::default();
    learn_checked(w, &mut revocations, signed.revocations.as_deref());
    let _ = open_checked::<pb::SyncRequest>(w, "SyncRequest", signed, &revocations);
    let _ = open_checked::<pb::SyncAnswer>(w, "SyncAnswer", signed, &revocations);
    // What an answer carries, whether or not it opened (the checks hold for any bytes).
    if let Ok(answer) = crypto::peek::<pb::SyncAnswer>("SyncAnswer", signed) {
        let mut primed = w.primed.clone();
        learn_checked(w, &mut primed, answer.revocations.as_ref());
        if let Some(d) = &answer.delegation {
            delegation_checked(w, d, &primed);
        }
    }
}

/// Edits the genuine envelope `v` as `edits` says: whatever still opens is `v` itself,
/// and a revocation list is learnt from it only as the cloud signed it.
fn check_mutated(w: &World, v: &Variant, edits: &[u8]) {
    let mut bytes = v.bytes.clone();
    let mut chunks = edits.chunks_exact(3);
    for edit in chunks.by_ref() {
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % bytes.len();
        bytes[at] ^= edit[2];
    }
    let cut = match chunks.remainder() {
        [n] | [n, _] => usize::from(*n),
        _ => 0,
    };
    bytes.truncate(bytes.len().saturating_sub(cut));
    let Ok(signed) = pb::Signed::decode(bytes.as_slice()) else {
        return;
    };
    let revocations = |s: &pb::Signed| {
        s.revocations
            .as_deref()
            .map(|r| (r.body.clone(), r.signature.clone()))
    };

    // The revocation list: taken only as the cloud signed it, that is as `v` carries it.
    let mut learnt = Revocations::default();
    if learn_checked(w, &mut learnt, signed.revocations.as_deref()) {
        assert_eq!(
            revocations(&signed),
            revocations(&v.signed),
            "an altered revocation list was learnt from {:?}",
            v.name
        );
    }

    let opened = check_envelope(w, &signed);
    if bytes == v.bytes {
        assert_eq!(signed, v.signed);
    }
    if signed == v.signed {
        let got = match &opened {
            Ok((_, Issuer::Cloud)) => Expect::Cloud,
            Ok((_, Issuer::Satellite(_))) => Expect::Satellite,
            Err(e) => Expect::Refused(e.clone()),
        };
        assert_eq!(got, v.expect, "the unedited {:?}", v.name);
    }
    let Ok((body, issuer)) = opened else {
        return;
    };
    assert!(v.may_open, "an edit of {:?} opened as {issuer:?}", v.name);
    assert_eq!(
        (&signed.body, &signed.signature),
        (&v.signed.body, &v.signed.signature),
        "an edited body or signature of {:?} opened",
        v.name
    );
    assert_eq!(
        body,
        pb::Authorization::decode(v.signed.body.as_slice()).expect("genuine")
    );
    let attached = |s: &pb::Signed| {
        s.delegation
            .as_deref()
            .map(|d| (d.body.clone(), d.signature.clone()))
    };
    assert_eq!(
        attached(&signed),
        attached(&v.signed),
        "an edited delegation of {:?} opened",
        v.name
    );
    if let Issuer::Satellite(d) = issuer {
        let genuine = v.signed.delegation.as_deref().expect("a chained variant");
        assert_eq!(
            d,
            pb::Delegation::decode(genuine.body.as_slice()).expect("genuine")
        );
    }
}

/// Learns `offered` into `held`, checking `learn` against what it must do: take a list
/// exactly when it verifies with the cloud key, decodes, and is newer; never go back.
fn learn_checked(w: &World, held: &mut Revocations, offered: Option<&pb::Signed>) -> bool {
    let cloud = w.cloud.verifying_key();
    let before = held.version();
    let before_signed = held.signed().cloned();
    let accepted = held.learn(&cloud, offered);

    let verified = offered.and_then(|o| {
        crypto::verify(&cloud, "RevocationList", o).ok()?;
        pb::RevocationList::decode(o.body.as_slice()).ok()
    });
    let newer = verified.as_ref().is_some_and(|l| l.version > before);
    assert_eq!(
        accepted, newer,
        "learn answered {accepted} for {offered:?} over v{before}"
    );
    assert!(held.version() >= before, "a revocation list went back");
    if let (true, Some(offered), Some(list)) = (accepted, offered, &verified) {
        assert!(
            w.is_genuine(Who::Cloud, "RevocationList", offered),
            "a revocation list the cloud never signed was learnt: {offered:?}"
        );
        assert_eq!(held.version(), list.version);
        assert!(list.serials.iter().all(|&s| held.is_revoked(s)));
        let kept = held.signed().expect("a learnt list is kept");
        assert_eq!(
            (&kept.body, &kept.signature),
            (&offered.body, &offered.signature)
        );
        assert!(kept.delegation.is_none() && kept.revocations.is_none());
        let again = Revocations::from_signed(&cloud, kept).expect("the kept list verifies");
        assert_eq!(again.version(), list.version);
    } else {
        assert_eq!(held.version(), before);
        assert_eq!(held.signed(), before_signed.as_ref());
    }
    accepted
}

/// `check_delegation` at [`NOW`], against a model of it; whatever passes is a delegation
/// the cloud signed.
fn delegation_checked(w: &World, signed: &pb::Signed, revoked: &Revocations) {
    let cloud = w.cloud.verifying_key();
    let checked = delegation::check_delegation(&cloud, signed, NOW, revoked);
    assert_eq!(checked, model_delegation(w, signed, NOW, revoked));
    if let Ok((d, key)) = &checked {
        assert!(
            w.is_genuine(Who::Cloud, "Delegation", signed),
            "a delegation the cloud never signed passed: {signed:?}"
        );
        assert!(NOW < d.expires_at && !revoked.is_revoked(d.serial));
        assert_eq!(key.as_bytes().as_slice(), d.satellite_public_key);
        // The last second it holds, and the first it does not.
        assert!(delegation::check_delegation(&cloud, signed, d.expires_at - 1, revoked).is_ok());
        assert!(matches!(
            delegation::check_delegation(&cloud, signed, d.expires_at, revoked),
            Err(SignatureError::DelegationExpired { expired_at, .. }) if expired_at == d.expires_at
        ));
    }
}

/// What `check_delegation` must answer, from the signing primitives.
fn model_delegation(
    w: &World,
    signed: &pb::Signed,
    now: i64,
    revoked: &Revocations,
) -> Result<(pb::Delegation, VerifyingKey), SignatureError> {
    let cloud = w.cloud.verifying_key();
    crypto::verify(&cloud, "Delegation", signed)
        .map_err(|_| SignatureError::UntrustedDelegation)?;
    let d = pb::Delegation::decode(signed.body.as_slice())
        .map_err(|_| SignatureError::UntrustedDelegation)?;
    if now >= d.expires_at {
        return Err(SignatureError::DelegationExpired {
            satellite: d.satellite,
            expired_at: d.expires_at,
        });
    }
    if revoked.is_revoked(d.serial) {
        return Err(SignatureError::DelegationRevoked {
            satellite: d.satellite,
            serial: d.serial,
        });
    }
    let key = crypto::verifying_key(&d.satellite_public_key)?;
    Ok((d, key))
}

/// `delegation::open` at [`NOW`] with the cloud key, checked against a model of it and the
/// oracle: whatever opens is a chain this module signed.
fn open_checked<M: Message + Default + PartialEq + Debug>(
    w: &World,
    type_name: &'static str,
    signed: &pb::Signed,
    revoked: &Revocations,
) -> Result<(M, Issuer), SignatureError> {
    open_checked_by(w, delegation::open::<M>, type_name, signed, revoked)
}

/// The signature of `delegation::open` (so that the tests can show a broken one caught).
type Open<M> = fn(
    &VerifyingKey,
    &'static str,
    &pb::Signed,
    i64,
    &Revocations,
) -> Result<(M, Issuer), SignatureError>;

fn open_checked_by<M: Message + Default + PartialEq + Debug>(
    w: &World,
    open: Open<M>,
    type_name: &'static str,
    signed: &pb::Signed,
    revoked: &Revocations,
) -> Result<(M, Issuer), SignatureError> {
    let cloud = w.cloud.verifying_key();
    let opened = open(&cloud, type_name, signed, NOW, revoked);
    let model = match signed.delegation.as_deref() {
        None => crypto::open::<M>(&cloud, type_name, signed).map(|m| (m, Issuer::Cloud)),
        Some(attached) => model_delegation(w, attached, NOW, revoked).and_then(|(d, key)| {
            crypto::open::<M>(&key, type_name, signed).map(|m| (m, Issuer::Satellite(d)))
        }),
    };
    assert_eq!(opened, model, "open disagrees with the chain's rules");
    match &opened {
        Ok((_, Issuer::Cloud)) => {
            assert!(signed.delegation.is_none());
            assert!(crypto::verify(&cloud, type_name, signed).is_ok());
            assert!(
                w.is_genuine(Who::Cloud, type_name, signed),
                "a {type_name} the cloud never signed opened: {signed:?}"
            );
        }
        Ok((_, issuer @ Issuer::Satellite(d))) => {
            let attached = signed
                .delegation
                .as_deref()
                .expect("a satellite's envelope");
            assert!(crypto::verify(&cloud, "Delegation", attached).is_ok());
            assert_eq!(
                &pb::Delegation::decode(attached.body.as_slice()).expect("it verified"),
                d
            );
            assert!(NOW < d.expires_at, "an expired delegation opened");
            assert!(!revoked.is_revoked(d.serial), "a revoked delegation opened");
            let key = crypto::verifying_key(&d.satellite_public_key).expect("it opened");
            assert!(crypto::verify(&key, type_name, signed).is_ok());
            assert!(
                w.is_genuine(Who::Cloud, "Delegation", attached),
                "a delegation the cloud never signed opened: {attached:?}"
            );
            assert!(
                key == w.satellite.verifying_key()
                    && w.is_genuine(Who::Satellite, type_name, signed),
                "a {type_name} the satellite never signed opened: {signed:?}"
            );
            // The issuer's account rule is the delegation's list.
            for a in &d.accounts {
                assert!(
                    issuer
                        .may_sign_for(&a.smart_account, &a.virtual_account)
                        .is_ok()
                );
            }
            assert!(issuer.may_sign_for("acme", "nowhere").is_err());
            assert!(issuer.same_signer(issuer) && !issuer.same_signer(&Issuer::Cloud));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    opened
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

/// The seeds of the target, `[mode, rest...]`: each genuine envelope as an envelope
/// (mode 0) and unedited (mode 2), with one edit; the sync files (mode 1).
pub fn seeds() -> Vec<Vec<u8>> {
    let w = world();
    let mut seeds = Vec::new();
    for (i, v) in w.variants.iter().enumerate() {
        seeds.push([&[0u8][..], &v.bytes].concat());
        let mode = u8::try_from(2 + 3 * i).expect("few variants");
        seeds.push(vec![mode]);
        // One bit of the signature's last byte.
        let at = u16::try_from(v.signed.body.len() + 4)
            .unwrap_or(0)
            .to_le_bytes();
        seeds.push(vec![mode, at[0], at[1], 0x01]);
    }
    for file in &w.sync_files {
        seeds.push([&[1u8][..], &file.encode_to_vec()].concat());
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_pass() {
        for seed in seeds() {
            check(&seed);
        }
    }

    /// An `open` that takes the delegation's word without checking the cloud's signature.
    fn credulous(
        _root: &VerifyingKey,
        type_name: &'static str,
        signed: &pb::Signed,
        _now: i64,
        _revoked: &Revocations,
    ) -> Result<(pb::Authorization, Issuer), SignatureError> {
        let attached = signed
            .delegation
            .as_deref()
            .ok_or(SignatureError::Invalid)?;
        let d: pb::Delegation = crypto::peek("Delegation", attached)?;
        let key = crypto::verifying_key(&d.satellite_public_key)?;
        Ok((crypto::open(&key, type_name, signed)?, Issuer::Satellite(d)))
    }

    /// The checks can fail: the credulous `open` is caught on the forged chain, which the
    /// real one refuses.
    #[test]
    #[should_panic(expected = "open disagrees")]
    fn a_credulous_open_is_caught() {
        let w = world();
        let forged = w
            .variants
            .iter()
            .find(|v| v.name == "forged delegation")
            .unwrap();
        let none = Revocations::default();
        let _ = open_checked_by(w, credulous, AUTHORIZATION, &forged.signed, &none);
    }

    /// And an `open` that agreed with the model on it would still be caught by the oracle:
    /// the forged delegation is not one the cloud signed.
    #[test]
    fn the_forged_delegation_is_not_genuine() {
        let w = world();
        let forged = w
            .variants
            .iter()
            .find(|v| v.name == "forged delegation")
            .unwrap();
        let attached = forged.signed.delegation.as_deref().unwrap();
        assert!(!w.is_genuine(Who::Cloud, "Delegation", attached));
        assert!(w.is_genuine(Who::Stranger, "Delegation", attached));
    }
}
