//! The errors of the engine.

/// A `Result` whose error is the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine refuses, each with a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A rate of zero transactions per second.
    #[error("rate must be at least 1 transaction per second")]
    ZeroRate,
    /// A burst of zero transactions.
    #[error("burst must be at least 1 transaction")]
    ZeroBurst,
    /// A rate above [`crate::MAX_RATE`].
    #[error(
        "rate {rate}/s is above the most one entitlement can enforce ({max}/s); use an unlimited limit instead"
    )]
    RateTooHigh {
        /// The rate asked for.
        rate: u64,
        /// The highest rate allowed.
        max: u64,
    },
    /// A burst whose tolerance does not fit the bucket's arithmetic.
    #[error("burst {burst} is too large for a rate of {rate}/s (at most {max})")]
    BurstTooLarge {
        /// The burst asked for.
        burst: u64,
        /// The rate it was asked with.
        rate: u64,
        /// The largest burst allowed at that rate.
        max: u64,
    },
    /// A serialised limit that is neither `unlimited` nor has a `per_second`.
    #[error(
        "a limit is either {{\"unlimited\": true}} or has a per_second rate (with optional burst and policy)"
    )]
    MalformedLimit,
    /// A tag that is empty, too long or not printable ASCII.
    #[error("entitlement tag {0:?} is invalid: use 1 to 64 letters, digits and - _ . :")]
    InvalidTag(String),
    /// The same tag registered twice.
    #[error("entitlement {0:?} is already registered")]
    DuplicateTag(String),
    /// A tag that no entitlement is registered with.
    #[error("no entitlement is registered as {0:?}")]
    UnknownTag(String),
    /// An entitlement handle from another gate.
    #[error("the entitlement handle belongs to another gate")]
    ForeignEntitlement,
    /// A limit table made from another gate's table.
    #[error("the limit table was made for another gate; start from this gate's limits()")]
    ForeignTable,
    /// More entitlements than a handle can address.
    #[error("a gate holds at most {max} entitlements")]
    TooManyEntitlements {
        /// The most a gate holds.
        max: usize,
    },
    /// An invalid steady-state configuration.
    #[error("invalid steady-state configuration: {0}")]
    Config(String),
    /// The coarse clock's ticker thread could not start.
    #[error("could not start the clock thread: {0}")]
    ClockThread(String),
    /// The sampler thread could not start.
    #[error("could not start the sampler thread: {0}")]
    SamplerThread(String),
    /// A histogram that does not decode.
    #[error("malformed TPS histogram: {0}")]
    Histogram(String),
}
