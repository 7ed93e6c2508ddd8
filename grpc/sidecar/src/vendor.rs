//! What the vendor's build fixes, never a device's configuration file: the product
//! catalogue (which gate entitlements exist, which licences feed them, what evaluation
//! allows), the unlicensed behaviour, and optionally the authority's keys. A vendor
//! building a product edits these, or sets the keys at build time:
//!
//! ```sh
//! ENTITLE_VENDOR_AUTHORITY_KEY=$(od -An -tx1 -v authority.pub | tr -d ' \n') \
//! ENTITLE_VENDOR_CODES_KEY=$(od -An -tx1 -v codes.pub | tr -d ' \n') \
//!   cargo build --release -p entitle-sidecar
//! ```
//!
//! With a key compiled in, the device trusts that key only: a configuration naming another
//! is refused at start-up (a licensee cannot point the device at an authority of its own).
//!
//! Once an authority has signed an authorisation (or an SLR code), what each licence is
//! worth is what it signed; these values apply before that, and to any licence it signed
//! nothing for. A device's `[agent] product` and `unlicensed` may only lower them.

use entitle_licensing::{Product, Unlicensed};

/// The product: the RADIUS server sold as CPAR (`PAR-TPS` fed by `PAR-TPS` and
/// `PAR-ADD-TPS`, 100 TPS per unit, hard; evaluation allows what the selection asks).
pub fn product() -> Product {
    Product::par_tps()
}

/// What applies when nothing licenses the device: a floor of 10 TPS.
pub const UNLICENSED: Unlicensed = Unlicensed::Floor { tps: 10 };

/// The device's unlicensed behaviour: the vendor's, lowered by what the configuration asks
/// (a lower floor); anything that would raise it (a higher floor, `monitor-only` over a
/// floor) is ignored, with the reason.
pub fn unlicensed(asked: Option<Unlicensed>) -> (Unlicensed, Option<String>) {
    match (UNLICENSED, asked) {
        (vendor, None) => (vendor, None),
        (Unlicensed::Floor { tps: vendor }, Some(Unlicensed::Floor { tps })) if tps <= vendor => {
            (Unlicensed::Floor { tps }, None)
        }
        (Unlicensed::MonitorOnly, Some(asked)) => (asked, None),
        (vendor, Some(asked)) => (
            vendor,
            Some(format!(
                "agent.unlicensed {asked:?} would raise the vendor's {vendor:?}; ignored"
            )),
        ),
    }
}

/// The authority's Ed25519 key compiled in (`ENTITLE_VENDOR_AUTHORITY_KEY`, 64 hex digits
/// of `authority.pub`), or none: then the configuration names it.
pub const AUTHORITY_KEY: Option<[u8; 32]> =
    compiled_in(option_env!("ENTITLE_VENDOR_AUTHORITY_KEY"));

/// The reservation codes' key compiled in (`ENTITLE_VENDOR_CODES_KEY`, 192 hex digits of
/// `codes.pub`), or none.
pub const CODES_KEY: Option<[u8; 96]> = compiled_in(option_env!("ENTITLE_VENDOR_CODES_KEY"));

/// A key given at build time as hex (unset or empty: none). A value that is not exactly
/// `2 * N` hex digits stops the build, so a vendor never ships a device trusting nothing.
const fn compiled_in<const N: usize>(hex: Option<&str>) -> Option<[u8; N]> {
    let Some(hex) = hex else { return None };
    let hex = hex.as_bytes();
    if hex.is_empty() {
        return None;
    }
    assert!(
        hex.len() == 2 * N,
        "a compiled-in entitle key has the wrong length (64 hex digits for the authority key, 192 for the codes key)"
    );
    let mut key = [0u8; N];
    let mut i = 0;
    while i < N {
        key[i] = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        i += 1;
    }
    Some(key)
}

const fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => panic!("a compiled-in entitle key must be hex digits"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_given_at_build_time_are_read_as_hex() {
        assert_eq!(compiled_in::<2>(None), None);
        assert_eq!(compiled_in::<2>(Some("")), None);
        assert_eq!(compiled_in::<2>(Some("0aFf")), Some([0x0a, 0xff]));
        for bad in ["0a", "0aff00", "0g00"] {
            assert!(
                std::panic::catch_unwind(|| compiled_in::<2>(Some(bad))).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_configuration_may_lower_the_unlicensed_floor_never_raise_it() {
        assert_eq!(unlicensed(None), (UNLICENSED, None));
        assert_eq!(
            unlicensed(Some(Unlicensed::Floor { tps: 5 })),
            (Unlicensed::Floor { tps: 5 }, None)
        );
        for raise in [Unlicensed::Floor { tps: 11 }, Unlicensed::MonitorOnly] {
            let (applied, warning) = unlicensed(Some(raise));
            assert_eq!(applied, UNLICENSED);
            assert!(warning.is_some_and(|w| w.contains("ignored")));
        }
    }
}
