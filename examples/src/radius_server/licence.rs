//! Where the gate's limit comes from: a fixed demo limit (standalone), the licence agent in
//! this process (embedded: `Sidecar::start(config, Some(gate))`), or a running `entitled`
//! (attached: an [`Attachment`] streams the gate's snapshots to it and applies the limit
//! tables it sends back).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use entitle_examples::radius_server::Licensed;
//!
//! let licensed = Licensed::standalone(100, 10)?;
//! assert_eq!(licensed.licence.gate.limits().limit(licensed.licence.entitlement).per_second(), Some(100));
//! licensed.flush(std::time::Duration::from_secs(1)).await?; // nothing to deliver
//! assert!(Licensed::attached("127.0.0.1:7070", "PAR-TPS", Default::default()).is_err());
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use entitle_engine::{CoarseClock, Gate, Limit, Policy, Sampler};
use entitle_sidecar::{AttachOptions, Attachment, Sidecar, SidecarConfig, SidecarError};

use super::worker::Licence;

/// How often the gate's clock ticks. The packet path brings the clock up to the time of
/// each check (`CoarseClock::catch_up`), so the ticker serves only the other readers (the
/// sampler, the agent). At the engine's default (100 us) the ticker alone took about 4% of
/// a core on a virtual machine, as much under load as idle.
pub const CLOCK_PERIOD: Duration = Duration::from_millis(10);

/// The entitlement a RADIUS transaction spends, in the `PAR-TPS` product.
pub const PAR_TPS: &str = "PAR-TPS";

/// The limit an attached gate enforces until `entitled` sends the licensed one: the
/// agent's default unlicensed floor.
pub const ATTACH_START_TPS: u64 = 10;

/// Why the licence could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LicenceError {
    /// The gate refused a limit or could not start its clock or sampler.
    #[error("the gate: {0}")]
    Engine(#[from] entitle_engine::Error),
    /// The embedded sidecar or the attachment failed.
    #[error("the licence agent: {0}")]
    Sidecar(#[from] SidecarError),
    /// The product has no such gate entitlement.
    #[error("the product has no gate entitlement {0:?}")]
    UnknownEntitlement(String),
    /// The sidecar's address is neither `unix:PATH` nor an http:// or https:// URL.
    #[error("{0:?} is not the address of a sidecar (unix:PATH, or http://HOST:PORT)")]
    BadUrl(String),
}

/// How the gate is licensed.
pub enum Mode {
    /// A fixed limit: an unlicensed demo.
    Standalone,
    /// The licence agent runs in this process on the gate.
    Embedded(Sidecar),
    /// The gate is attached to a running `entitled`.
    Attached(Attachment),
}

/// A gate with its licence, and the sampler that keeps its per-second peaks.
pub struct Licensed {
    /// The gate and entitlement for the packet path.
    pub licence: Licence,
    /// Where its limits come from.
    pub mode: Mode,
    _sampler: Sampler,
}

impl Licensed {
    /// A gate of `tps` transactions per second with a `burst`, enforced hard, that no
    /// licence changes.
    pub fn standalone(tps: u64, burst: u64) -> Result<Licensed, LicenceError> {
        let mut builder = Gate::builder(CoarseClock::with_period(CLOCK_PERIOD)?);
        let entitlement = builder.register(PAR_TPS, Limit::new(tps, burst, Policy::Hard)?)?;
        Licensed::with(builder.build(), entitlement, Mode::Standalone)
    }

    /// Starts the licence agent in this process on a gate with every entitlement of the
    /// configured product; the packet path spends `tag`. The caller serves the sidecar's
    /// gRPC service ([`Sidecar::serve`]) so that `entitle` can register the device.
    pub async fn embedded(config: SidecarConfig, tag: &str) -> Result<Licensed, LicenceError> {
        let mut builder = Gate::builder(CoarseClock::with_period(CLOCK_PERIOD)?);
        let mut entitlement = None;
        for spec in &config.agent.product.entitlements {
            // A placeholder: the agent applies its own limits before anything is checked.
            let handle = builder.register(&spec.tag, Limit::hard(ATTACH_START_TPS)?)?;
            if spec.tag == tag {
                entitlement = Some(handle);
            }
        }
        let entitlement =
            entitlement.ok_or_else(|| LicenceError::UnknownEntitlement(tag.into()))?;
        let gate = builder.build();
        let sidecar = Sidecar::start(config, Some(Arc::clone(&gate))).await?;
        Licensed::with(gate, entitlement, Mode::Embedded(sidecar))
    }

    /// Attaches a gate with the entitlement `tag` to the `entitled` at `url` (`unix:PATH`
    /// of its socket, or `http://host:port` with [`AttachOptions::credential`]); until it
    /// sends the licensed limit the gate admits [`ATTACH_START_TPS`].
    pub fn attached(
        url: &str,
        tag: &str,
        options: AttachOptions,
    ) -> Result<Licensed, LicenceError> {
        let rest = url
            .strip_prefix("unix:")
            .or_else(|| url.strip_prefix("http://"))
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|rest| rest.is_empty() || rest.contains(char::is_whitespace)) {
            return Err(LicenceError::BadUrl(url.into()));
        }
        let mut builder = Gate::builder(CoarseClock::with_period(CLOCK_PERIOD)?);
        let entitlement = builder.register(tag, Limit::hard(ATTACH_START_TPS)?)?;
        let gate = builder.build();
        let attachment = Attachment::start(Arc::clone(&gate), url, options)?;
        Licensed::with(gate, entitlement, Mode::Attached(attachment))
    }

    fn with(
        gate: Arc<Gate<CoarseClock>>,
        entitlement: entitle_engine::Entitlement,
        mode: Mode,
    ) -> Result<Licensed, LicenceError> {
        let sampler = gate.start_sampler(Duration::from_secs(1))?;
        Ok(Licensed {
            licence: Licence { gate, entitlement },
            mode,
            _sampler: sampler,
        })
    }

    /// Delivers the usage counted so far: the embedded agent snapshots the gate and
    /// uploads its spool to the authority; an attachment hands its snapshots to `entitled`
    /// (waiting at most `timeout`). Standalone there is nowhere to deliver.
    pub async fn flush(&self, timeout: Duration) -> Result<(), LicenceError> {
        match &self.mode {
            Mode::Standalone => Ok(()),
            Mode::Embedded(sidecar) => {
                let waiting = tokio::time::timeout(timeout, sidecar.flush())
                    .await
                    .map_err(|_| {
                        SidecarError::Unavailable(format!(
                            "the usage was not delivered within {timeout:?}"
                        ))
                    })??;
                match waiting {
                    0 => Ok(()),
                    n => Err(SidecarError::Unavailable(format!(
                        "{n} usage reports are still waiting for the authority"
                    ))
                    .into()),
                }
            }
            Mode::Attached(attachment) => Ok(attachment.flush(timeout).await?),
        }
    }
}
