//! The proxy's Prometheus metrics, in the OpenMetrics text format at `/metrics`:
//!
//! - `entitle_radius_proxy_packets_total{reason}`: every packet by what became of it (see
//!   [`Reason`]);
//! - `entitle_radius_proxy_upstream_up{upstream}`: 1 while an upstream is up, 0 once it is
//!   marked down;
//! - `entitle_radius_proxy_upstream_timeouts_total{upstream}`: requests it did not answer in
//!   time.
//!
//! With an embedded licence agent, the agent's own metrics (`entitle_limit_tps`,
//! `entitle_license_state`, `entitle_admitted_total`...) follow in the same text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What became of a packet; the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A counted request within the licence, forwarded.
    Admitted,
    /// A request not counted (by configuration), forwarded.
    Uncounted,
    /// A counted Accounting-Request beyond the licence, forwarded anyway (`count` mode).
    OverLicenceForwarded,
    /// An Access-Request beyond the licence, dropped.
    OverLicenceDropped,
    /// An Access-Request beyond the licence, answered Access-Reject.
    OverLicenceRejected,
    /// A Status-Server answered by the proxy itself (never counted).
    StatusServer,
    /// A datagram that is not a well-formed RADIUS packet.
    Malformed,
    /// A packet from an address no client covers.
    UnknownClient,
    /// A packet whose code a client may not send (a reply, Status-Client).
    UnexpectedCode,
    /// A request whose authenticator or Message-Authenticator does not verify (wrong secret).
    BadAuthenticator,
    /// An Access-Request without the Message-Authenticator its client must send.
    MissingMessageAuthenticator,
    /// A retransmission answered again with the cached reply.
    DuplicateAnsweredFromCache,
    /// A retransmission of a request still waiting, sent on to the upstream again.
    RetransmissionForwarded,
    /// A retransmission of a request dropped before (beyond the licence), dropped again.
    RetransmissionDropped,
    /// A reply from an upstream relayed to its client.
    ReplyRelayed,
    /// A reply from an upstream that matches nothing outstanding (late, or forged).
    UpstreamReplyUnmatched,
    /// A reply from an upstream that does not verify, or lacks a required
    /// Message-Authenticator.
    UpstreamReplyBad,
    /// A datagram from an address that is no upstream's, on an upstream socket.
    UpstreamUnknownSource,
    /// A request no upstream answered, after every try: the client gets no answer.
    UpstreamFailed,
    /// A request that could not be forwarded (too large once re-signed, or no room).
    ForwardFailed,
}

impl Reason {
    /// Every reason, for a registry that shows zeros too.
    pub const ALL: [Reason; 20] = [
        Reason::Admitted,
        Reason::Uncounted,
        Reason::OverLicenceForwarded,
        Reason::OverLicenceDropped,
        Reason::OverLicenceRejected,
        Reason::StatusServer,
        Reason::Malformed,
        Reason::UnknownClient,
        Reason::UnexpectedCode,
        Reason::BadAuthenticator,
        Reason::MissingMessageAuthenticator,
        Reason::DuplicateAnsweredFromCache,
        Reason::RetransmissionForwarded,
        Reason::RetransmissionDropped,
        Reason::ReplyRelayed,
        Reason::UpstreamReplyUnmatched,
        Reason::UpstreamReplyBad,
        Reason::UpstreamUnknownSource,
        Reason::UpstreamFailed,
        Reason::ForwardFailed,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Admitted => "admitted",
            Reason::Uncounted => "uncounted",
            Reason::OverLicenceForwarded => "over_licence_forwarded",
            Reason::OverLicenceDropped => "over_licence_dropped",
            Reason::OverLicenceRejected => "over_licence_rejected",
            Reason::StatusServer => "status_server",
            Reason::Malformed => "malformed",
            Reason::UnknownClient => "unknown_client",
            Reason::UnexpectedCode => "unexpected_code",
            Reason::BadAuthenticator => "bad_authenticator",
            Reason::MissingMessageAuthenticator => "missing_message_authenticator",
            Reason::DuplicateAnsweredFromCache => "duplicate_answered_from_cache",
            Reason::RetransmissionForwarded => "retransmission_forwarded",
            Reason::RetransmissionDropped => "retransmission_dropped",
            Reason::ReplyRelayed => "reply_relayed",
            Reason::UpstreamReplyUnmatched => "upstream_reply_unmatched",
            Reason::UpstreamReplyBad => "upstream_reply_bad",
            Reason::UpstreamUnknownSource => "upstream_unknown_source",
            Reason::UpstreamFailed => "upstream_failed",
            Reason::ForwardFailed => "forward_failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// The proxy's counters and gauges.
pub struct Metrics {
    registry: Registry,
    packets: Family<ReasonLabels, Counter>,
    up: Family<UpstreamLabels, Gauge>,
    timeouts: Family<UpstreamLabels, Counter>,
}

impl Metrics {
    /// Metrics with every reason at zero and every upstream up.
    pub fn new<'a>(upstreams: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::with_prefix("entitle_radius_proxy");
        let packets = Family::<ReasonLabels, Counter>::default();
        let up = Family::<UpstreamLabels, Gauge>::default();
        let timeouts = Family::<UpstreamLabels, Counter>::default();
        registry.register("packets", "Packets by what became of them", packets.clone());
        registry.register(
            "upstream_up",
            "1 while the upstream is up, 0 while it is marked down",
            up.clone(),
        );
        registry.register(
            "upstream_timeouts",
            "Requests the upstream did not answer in time",
            timeouts.clone(),
        );
        for reason in Reason::ALL {
            drop(packets.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
        let metrics = Self {
            registry,
            packets,
            up,
            timeouts,
        };
        for name in upstreams {
            metrics.set_up(name, true);
            drop(metrics.timeouts.get_or_create(&UpstreamLabels {
                upstream: name.to_owned(),
            }));
        }
        metrics
    }

    /// Counts one packet.
    pub fn count(&self, reason: Reason) {
        self.packets
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The count for a reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.packets
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Marks an upstream up or down.
    pub fn set_up(&self, upstream: &str, up: bool) {
        self.up
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Counts a timeout of an upstream.
    pub fn timeout(&self, upstream: &str) {
        self.timeouts
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    /// The text of `/metrics`, without the final `# EOF`.
    pub fn encode_body(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        strip_eof(text)
    }
}

/// Takes the `# EOF` line off an OpenMetrics text, so that two can be joined.
pub(crate) fn strip_eof(mut text: String) -> String {
    if let Some(at) = text.rfind("# EOF") {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_shows_from_the_start() {
        let metrics = Metrics::new(["a"]);
        metrics.count(Reason::Malformed);
        metrics.count(Reason::Malformed);
        metrics.timeout("a");
        metrics.set_up("a", false);
        let text = metrics.encode_body();
        assert!(text.contains("entitle_radius_proxy_packets_total{reason=\"malformed\"} 2"));
        assert!(text.contains("entitle_radius_proxy_packets_total{reason=\"admitted\"} 0"));
        assert!(text.contains("entitle_radius_proxy_upstream_up{upstream=\"a\"} 0"));
        assert!(text.contains("entitle_radius_proxy_upstream_timeouts_total{upstream=\"a\"} 1"));
        assert!(!text.contains("# EOF"));
        assert_eq!(metrics.get(Reason::Malformed), 2);
    }
}
