//! Writes the seed corpora in `fuzz/seeds/<target>/`: real codes made by the authority of
//! the fuzz world, plain, wrapped as an e-mail would, and in each target's byte form.
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entitle_fuzz::codes::{Udi, make_request, make_return};
use entitle_fuzz::world;

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
    Ok(())
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
