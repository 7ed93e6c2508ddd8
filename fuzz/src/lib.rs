//! What the fuzz targets share: the modules under test (compiled from their source files),
//! the authority, device and request every code target checks against, the genuine codes
//! made for them, and the checks that hold for any input.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use entitle_codes as codes;
pub use entitle_codes::token;
pub use entitle_proto::signing as crypto;

pub mod chain;
pub mod envelope;

use codes::{CodeSigningKey, CodeVerifyingKey, PlrGrant, Request, SlrGrant, Udi, Verified};

/// The fixed world of the targets.
pub struct World {
    /// The device's copy of the authority's key.
    pub key: CodeVerifyingKey,
    /// The device.
    pub udi: Udi,
    /// Its pending request.
    pub sequence: u32,
    /// The only authorisation codes that may verify: those the authority made.
    pub genuine: Vec<String>,
}

/// The world, made once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let authority = CodeSigningKey::from_seed(&[0x5A; 32]);
        let udi = Udi::new("CPAR", "SN1").expect("a valid UDI");
        let request = Request {
            udi: udi.clone(),
            sequence: 7,
        };
        let plr = codes::make_plr(
            &authority,
            &request,
            &PlrGrant {
                smart_account_ref: 4711,
                export_controlled: true,
            },
        )
        .expect("a PLR code");
        let slr = codes::make_slr(&authority, &request, &slr_grant()).expect("an SLR code");
        World {
            key: authority.verifying_key(),
            udi,
            sequence: 7,
            genuine: vec![plr, slr],
        }
    })
}

/// The grant of the genuine SLR code.
pub fn slr_grant() -> SlrGrant {
    SlrGrant {
        licences: BTreeMap::from([("PAR-TPS".to_owned(), 300), ("PAR-DIAM".to_owned(), 2)]),
        smart_account: "Acme".into(),
        virtual_account: "Lab".into(),
        export_controlled: true,
        issued_at: 1_750_000_000,
        worth: Default::default(),
    }
}

/// Runs the device's checks on `text` as an authorisation code: a code that verifies must
/// be one the authority made (else the format lets a code be forged or altered), and what
/// it grants must be what was granted.
pub fn check_authorization(text: &str) {
    let w = world();
    let peeked = codes::peek_authorization(text);
    match codes::verify_authorization(text, &w.key, &w.udi, w.sequence) {
        Ok(verified) => {
            let normalized = codes::normalize_authorization(text).expect("it verified");
            assert!(
                w.genuine.contains(&normalized),
                "a code the authority never made verified: {normalized}"
            );
            match verified {
                Verified::Plr(grant) => assert_eq!(grant.smart_account_ref, 4711),
                Verified::Slr(grant) => assert_eq!(grant, slr_grant()),
            }
            assert!(peeked.is_ok(), "verified but does not parse");
        }
        Err(e) => {
            // Every refusal has its sentence.
            assert!(!e.to_string().is_empty());
        }
    }
    if peeked.is_ok() {
        let code = codes::make_return(&w.udi, w.sequence, text);
        if let Ok(code) = code {
            let returned = codes::parse_return(&code).expect("a return code we made parses");
            assert!(codes::return_tag_matches(&returned, text));
        }
    }
    let _ = codes::confirmation(text, &w.udi);
}
