//! Writes the seed corpora in `fuzz/seeds/<target>/`: real codes made by the authority of
//! the fuzz world, plain, wrapped as an e-mail would, and in each target's byte form; the
//! device messages as they reach the authority, signed by the envelope target's keys; ID
//! tokens of the shape the authority issues; satellite delegation chains and sync files,
//! genuine and not, signed by the chain target's keys.
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entitle_fuzz::codes::{Udi, make_request, make_return};
use entitle_fuzz::envelope::{TYPE_NAMES, keys, seal};
use entitle_fuzz::world;
use entitle_proto::{pb, signing_bytes};
use prost::Message as _;

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let w = world();
    let [plr, slr] = [&w.genuine[0], &w.genuine[1]];
    let wrap = |code: &str| -> String {
        code.as_bytes()
            .chunks(40)
            .map(|line| format!("  {}\r\n", String::from_utf8_lossy(line)))
            .collect()
    };
    let requests = [
        make_request(&w.udi, w.sequence)?,
        make_request(&Udi::new("CPAR-X.9_z", "FCH2144V1A")?, 0x3FF_FFFF)?,
        make_request(&Udi::new("P", "S")?, u32::MAX)?,
    ];
    let returns = [
        make_return(&w.udi, w.sequence, plr)?,
        make_return(&w.udi, w.sequence, slr)?,
    ];
    // The PLR code as the plr target's mapped form: 0, then each character's Z85 value.
    let mut plr_mapped = vec![0u8];
    plr_mapped.extend(
        plr.bytes()
            .map(|c| Z85.iter().position(|&d| d == c).unwrap_or(0) as u8),
    );
    // The SLR code as the slr target's raw form: 0, the signature, the body.
    let (body, signature) = slr["SLR1.".len()..].split_once('.').ok_or("an SLR code")?;
    let mut slr_raw = vec![0u8];
    slr_raw.extend(URL_SAFE_NO_PAD.decode(signature)?);
    slr_raw.extend(URL_SAFE_NO_PAD.decode(body)?);

    let text = |s: &str| s.as_bytes().to_vec();
    write("request", requests.iter().map(|c| text(c)).collect())?;
    write("return", returns.iter().map(|c| text(c)).collect())?;
    write("plr", vec![text(plr), text(&wrap(plr)), plr_mapped])?;
    write("slr", vec![text(slr), text(&wrap(slr)), slr_raw])?;
    write(
        "verify",
        vec![
            text(plr),
            text(slr),
            text(&wrap(slr)),
            text(&requests[0]),
            text(&returns[0]),
        ],
    )?;
    write("envelope", envelopes())?;
    write("chain", entitle_fuzz::chain::seeds())?;
    write(
        "token",
        [
            "3f2a9c01b7de.AbCdEfGhIjKlMnOpQrStUvWxYz0123-_",
            "000000000000.q83vEjRWeJq83vEjRWeJq83vEjRWeJq8",
            "3f2a9c01b7de.se.cr.et",
            "3f2a9c01b7de",
        ]
        .iter()
        .map(|t| text(t))
        .collect(),
    )?;
    Ok(())
}

/// The envelope target's inputs, `[pick, batch, envelope...]`: each device message signed as
/// a device signs it, by the trusted key (so it opens) or the stranger (so it does not), and
/// a registration request as it comes, unsigned but with its proof.
fn envelopes() -> Vec<Vec<u8>> {
    let k = keys();
    let instance = "5c1e0f3a9b7d4e21a0c6d8f2b3e4a5c6".to_owned();
    let report = pb::UsageReport {
        instance_id: instance.clone(),
        sequence: 42,
        window_start: 1_750_000_000_000,
        window_end: 1_750_000_060_000,
        usage: vec![
            pb::EntitlementUsage {
                tag: "PAR-TPS".into(),
                admitted: 17_940,
                rejected: 12,
                peak_tps: 301,
                tps_histogram: vec![0x1c, 0x84, 0x93, 0x14, 0, 0, 0, 0x13, 0x78, 0x9c, 0x93],
            },
            pb::EntitlementUsage {
                tag: "PAR-DIAM".into(),
                ..Default::default()
            },
        ],
    };
    let authorize = pb::AuthorizeBody {
        instance_id: instance.clone(),
        counter: 9,
        requested: vec![
            pb::LicenseCount {
                tag: "PAR-TPS".into(),
                count: 300,
            },
            pb::LicenseCount {
                tag: "PAR-ADD-TPS".into(),
                count: 2,
            },
        ],
    };
    let renew = pb::RenewIdBody {
        instance_id: instance.clone(),
        counter: 10,
    };
    let deregister = pb::DeregisterBody {
        instance_id: instance,
        counter: 11,
    };
    let token = "3f2a9c01b7de.AbCdEfGhIjKlMnOpQrStUvWxYz0123-_";
    let udi = pb::Udi {
        product_id: "CPAR".into(),
        serial: "FCH2144V1AB".into(),
    };
    let device_key = k.trusted.verifying_key().to_bytes().to_vec();
    // As entitle_proto::signing::registration_proof_bytes writes it.
    let mut proven = Vec::new();
    for part in [token, &udi.product_id, &udi.serial] {
        proven.extend_from_slice(part.as_bytes());
        proven.push(0);
    }
    proven.extend_from_slice(&device_key);
    let proof = ed25519_dalek::Signer::sign(&k.trusted, &signing_bytes(TYPE_NAMES[0], &proven));
    let register = pb::RegisterRequest {
        id_token: token.into(),
        udi: Some(udi),
        device_public_key: device_key,
        proof: proof.to_bytes().to_vec(),
    };
    let input = |pick: u8, batch: u8, message: Vec<u8>| [vec![pick, batch], message].concat();
    vec![
        input(
            1,
            0xFF,
            seal(&k.trusted, TYPE_NAMES[1], report.encode_to_vec()).encode_to_vec(),
        ),
        input(
            2,
            0x55,
            seal(&k.trusted, TYPE_NAMES[2], authorize.encode_to_vec()).encode_to_vec(),
        ),
        input(
            3,
            0x0F,
            seal(&k.trusted, TYPE_NAMES[3], renew.encode_to_vec()).encode_to_vec(),
        ),
        input(
            4,
            0xF0,
            seal(&k.stranger, TYPE_NAMES[4], deregister.encode_to_vec()).encode_to_vec(),
        ),
        input(0, 0x33, register.encode_to_vec()),
    ]
}

fn write(target: &str, seeds: Vec<Vec<u8>>) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed)?;
    }
    Ok(())
}
