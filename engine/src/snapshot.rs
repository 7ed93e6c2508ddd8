//! Usage snapshots: what was admitted and rejected per entitlement since the previous one.
//!
//! A snapshot serialises with serde. Its per-second TPS histogram is carried in the
//! standard HdrHistogram V2 encoding, compressed and base64-encoded exactly as in
//! HdrHistogram's log format, so other HDR tools read it.
//!
//! ```
//! use entitle_engine::{FakeClock, Gate, Limit};
//! use std::time::Duration;
//!
//! let clock = FakeClock::new();
//! let mut builder = Gate::builder(clock.clone());
//! let tps = builder.register("PAR-TPS", Limit::hard(100)?)?;
//! let gate = builder.build();
//! let mut worker = gate.worker();
//! for _ in 0..150 {
//!     let _ = worker.check(tps);
//! }
//! clock.advance(Duration::from_secs(1));
//! gate.sample();
//! let snapshot = gate.snapshot();
//! assert_eq!((snapshot.entitlements[0].admitted, snapshot.entitlements[0].rejected), (100, 50));
//! assert_eq!(snapshot.entitlements[0].peak_tps, 100);
//! assert_eq!(gate.snapshot().entitlements[0].admitted, 0, "drained exactly once");
//! # Ok::<(), entitle_engine::Error>(())
//! ```

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Usage of every entitlement over one window, drained from the gate exactly once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// 1 for the first snapshot of a gate, then one more each time.
    pub sequence: u64,
    /// Clock nanoseconds at the end of the previous snapshot (the start of this window).
    pub window_start_nanos: u64,
    /// Clock nanoseconds when this snapshot was taken.
    pub window_end_nanos: u64,
    /// One entry per entitlement, in handle order.
    pub entitlements: Vec<Usage>,
}

impl Snapshot {
    /// The usage of the entitlement registered as `tag`.
    pub fn usage(&self, tag: &str) -> Option<&Usage> {
        self.entitlements.iter().find(|u| &*u.tag == tag)
    }
}

/// One entitlement's usage over a snapshot window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// The entitlement's tag.
    pub tag: Arc<str>,
    /// Transactions admitted in the window.
    pub admitted: u64,
    /// Transactions rejected in the window.
    pub rejected: u64,
    /// The highest admitted TPS of any sampled second.
    pub peak_tps: u64,
    /// The highest offered (admitted + rejected) TPS of any sampled second.
    pub peak_offered_tps: u64,
    /// Seconds sampled in the window.
    pub sampled_seconds: u64,
    /// Admitted TPS per sampled second; `None` when every sampled second was idle.
    pub tps_histogram: Option<Box<TpsHistogram>>,
}

/// An HDR histogram of admitted TPS per second.
#[derive(Clone, Debug, PartialEq)]
pub struct TpsHistogram(pub Histogram<u64>);

impl TpsHistogram {
    /// The histogram in HdrHistogram's V2 compressed encoding (as in its log format).
    pub fn to_v2_deflate(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|e| Error::Histogram(format!("{e:?}")))?;
        Ok(bytes)
    }

    /// Reads a histogram in HdrHistogram's V2 encoding, compressed or not.
    pub fn from_v2(bytes: &[u8]) -> Result<Self> {
        let mut reader = bytes;
        Deserializer::new()
            .deserialize(&mut reader)
            .map(TpsHistogram)
            .map_err(|e| Error::Histogram(format!("{e:?}")))
    }
}

impl Serialize for TpsHistogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let bytes = self.to_v2_deflate().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&BASE64.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for TpsHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = BASE64
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        TpsHistogram::from_v2(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_serde_in_the_hdr_log_encoding() {
        let mut h = Histogram::<u64>::new(2).expect("2 significant figures are valid");
        for tps in [0, 99, 100, 100, 250_000] {
            h.record(tps)
                .expect("auto-resizing histograms take any value");
        }
        let usage = Usage {
            tag: "PAR-TPS".into(),
            admitted: 1,
            rejected: 2,
            peak_tps: 250_000,
            peak_offered_tps: 250_000,
            sampled_seconds: 5,
            tps_histogram: Some(Box::new(TpsHistogram(h.clone()))),
        };
        let json = serde_json::to_string(&usage).expect("serialises");
        // "HISTF" is the base64 of the V2 compressed cookie that HDR log readers look for.
        assert!(json.contains("\"HISTF"), "{json}");
        let back: Usage = serde_json::from_str(&json).expect("deserialises");
        let back = back.tps_histogram.expect("present").0;
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn malformed_histograms_are_refused() {
        assert!(TpsHistogram::from_v2(b"").is_err());
        assert!(TpsHistogram::from_v2(b"not a histogram at all").is_err());
        let good = TpsHistogram(Histogram::new(2).expect("valid"))
            .to_v2_deflate()
            .expect("encodes");
        assert!(TpsHistogram::from_v2(&good[..good.len() / 2]).is_err());
        assert!(serde_json::from_str::<TpsHistogram>("\"!!!\"").is_err());
    }
}
