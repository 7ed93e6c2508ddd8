//! What the vendor's build fixes, never a device's configuration file: the product
//! catalogue (which gate entitlements exist, which licences feed them, what evaluation
//! allows) and the unlicensed behaviour. A vendor building a product edits these.
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

#[cfg(test)]
mod tests {
    use super::*;

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
