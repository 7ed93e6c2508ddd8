//! Licence alarms as SNMPv2c traps (RFC 3416 `SNMPv2-Trap-PDU` in an RFC 1901 community
//! message, over UDP), named after the smart-licensing traps of the products entitle
//! stands in for.
//!
//! The messages are the types of `rasn-snmp` (the SNMP modules of the rasn ASN.1
//! project), BER-encoded by `rasn`: a maintained encoder of the standard's own types,
//! rather than hand-written BER. Only encoding happens here; the sidecar parses no SNMP.
//!
//! # The OID tree
//!
//! Under `1.3.6.1.4.1.32473`, the private enterprise number IANA keeps for documentation
//! (RFC 5612); a vendor shipping entitle puts its own enterprise number in [`ENTERPRISE`].
//!
//! ```text
//! entitleMIB                          1.3.6.1.4.1.32473.1
//!   entitleNotifications              1.3.6.1.4.1.32473.1.0
//!     entitleLicenseUsage80           .1   traffic crossed 80% of a licence
//!     entitleLicenseUsage90           .2   ... 90%
//!     entitleLicenseUsage100          .3   ... 100% (the licence is used up)
//!     entitleOutOfCompliance          .4   the authority granted less than requested
//!     entitleAuthorizationExpired     .5   the communication deadline passed
//!     entitleRegistrationStateChanged .6   UNREGISTERED / REGISTERING / REGISTERED ...
//!   entitleObjects                    1.3.6.1.4.1.32473.1.1   (scalars, instance .0)
//!     entitleUdi                      .1   OCTET STRING  "<product id>:<serial>"
//!     entitleMessage                  .2   OCTET STRING  the event in one line
//!     entitleLicenseTag               .3   OCTET STRING  e.g. "PAR-TPS"
//!     entitleUsagePercent             .4   INTEGER       the level crossed, % of licence
//!     entitleOfferedTps               .5   Gauge32
//!     entitleLicensedTps              .6   Gauge32
//!     entitleFromState                .7   OCTET STRING  the status before
//!     entitleToState                  .8   OCTET STRING  the status after
//!     entitleReason                   .9   OCTET STRING  why (failures, expiries)
//! ```
//!
//! Every trap carries `sysUpTime.0` (the sidecar's uptime), `snmpTrapOID.0`, then
//! `entitleUdi` and `entitleMessage`; usage traps add the tag, percent and rates; the
//! others the states (and a reason when there is one).

use std::net::{SocketAddr, UdpSocket};

use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::v1::{Gauge, TimeTicks};
use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Trap, VarBind, VarBindValue};
use rasn_snmp::v2c::Message;

use crate::events::{Alarm, TrapKind};

/// The private enterprise number the tree hangs under.
pub const ENTERPRISE: u32 = 32473;

/// `sysUpTime.0`.
const SYS_UP_TIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
/// `snmpTrapOID.0`.
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];

impl TrapKind {
    /// Its OID.
    pub(crate) fn oid(self) -> Vec<u32> {
        vec![1, 3, 6, 1, 4, 1, ENTERPRISE, 1, 0, self as u32]
    }
}

/// The OID of object `arc` of `entitleObjects`, instance 0.
pub(crate) fn object(arc: u32) -> Vec<u32> {
    vec![1, 3, 6, 1, 4, 1, ENTERPRISE, 1, 1, arc, 0]
}

/// One trap's contents.
pub(crate) struct TrapContent<'a> {
    pub(crate) request_id: i32,
    /// The sender's uptime in hundredths of a second (wraps after 497 days, as TimeTicks do).
    pub(crate) uptime_centis: u32,
    pub(crate) udi: &'a str,
    pub(crate) message: &'a str,
    pub(crate) alarm: &'a Alarm,
}

/// The trap as a BER-encoded SNMPv2c message for `community`.
pub(crate) fn encode(community: &str, trap: &TrapContent<'_>) -> Result<Vec<u8>, String> {
    let kind = TrapKind::of(trap.alarm);
    let mut bindings = vec![
        bind(
            SYS_UP_TIME.to_vec(),
            ObjectSyntax::ApplicationWide(ApplicationSyntax::Ticks(TimeTicks(trap.uptime_centis))),
        )?,
        bind(
            SNMP_TRAP_OID.to_vec(),
            ObjectSyntax::Simple(SimpleSyntax::ObjectId(oid(kind.oid())?)),
        )?,
        bind(object(1), text(trap.udi))?,
        bind(object(2), text(trap.message))?,
    ];
    match trap.alarm {
        Alarm::Usage {
            percent,
            tag,
            offered_tps,
            licensed_tps,
            ..
        } => {
            bindings.push(bind(object(3), text(tag))?);
            bindings.push(bind(
                object(4),
                ObjectSyntax::Simple(SimpleSyntax::Integer(Integer::from(i64::from(*percent)))),
            )?);
            bindings.push(bind(object(5), gauge(*offered_tps))?);
            bindings.push(bind(object(6), gauge(*licensed_tps))?);
        }
        Alarm::OutOfCompliance { from } => {
            bindings.push(bind(object(7), text(from))?);
            bindings.push(bind(object(8), text("OUT OF COMPLIANCE"))?);
        }
        Alarm::AuthorizationExpired { from } => {
            bindings.push(bind(object(7), text(from))?);
            bindings.push(bind(object(8), text("AUTHORIZATION EXPIRED"))?);
        }
        Alarm::RegistrationChanged { from, to, reason } => {
            bindings.push(bind(object(7), text(from))?);
            bindings.push(bind(object(8), text(to))?);
            if let Some(reason) = reason {
                bindings.push(bind(object(9), text(reason))?);
            }
        }
    }
    let message = Message {
        version: Integer::from(1),
        community: OctetString::from(community.as_bytes().to_vec()),
        data: Pdus::Trap(Trap(Pdu {
            request_id: trap.request_id,
            error_status: Pdu::ERROR_STATUS_NO_ERROR,
            error_index: 0,
            variable_bindings: bindings,
        })),
    };
    rasn::ber::encode(&message).map_err(|e| format!("cannot encode the trap: {e}"))
}

fn oid(arcs: Vec<u32>) -> Result<ObjectIdentifier, String> {
    ObjectIdentifier::new(arcs).ok_or_else(|| "an invalid OID".to_owned())
}

fn bind(name: Vec<u32>, value: ObjectSyntax) -> Result<VarBind, String> {
    Ok(VarBind {
        name: oid(name)?,
        value: VarBindValue::Value(value),
    })
}

/// An OCTET STRING of at most 255 bytes (the SNMP DisplayString bound), cut on a
/// character boundary.
fn text(s: &str) -> ObjectSyntax {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ObjectSyntax::Simple(SimpleSyntax::String(OctetString::from(
        s.as_bytes()[..end].to_vec(),
    )))
}

fn gauge(value: u64) -> ObjectSyntax {
    ObjectSyntax::ApplicationWide(ApplicationSyntax::Unsigned(Gauge(
        u32::try_from(value).unwrap_or(u32::MAX),
    )))
}

/// A trap sender: one UDP socket, one target.
pub(crate) struct TrapSender {
    socket: UdpSocket,
    target: SocketAddr,
    community: String,
}

impl TrapSender {
    /// Opens a socket for traps to `target`.
    pub(crate) fn open(target: SocketAddr, community: String) -> std::io::Result<Self> {
        let local: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            target,
            community,
        })
    }

    /// Sends one trap.
    pub(crate) fn send(&self, trap: &TrapContent<'_>) -> std::io::Result<()> {
        let bytes = encode(&self.community, trap).map_err(std::io::Error::other)?;
        self.socket.send_to(&bytes, self.target).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn registration() -> Alarm {
        Alarm::RegistrationChanged {
            from: "REGISTERING".into(),
            to: "REGISTERED".into(),
            reason: None,
        }
    }

    fn content(alarm: &Alarm) -> TrapContent<'_> {
        TrapContent {
            request_id: 7,
            uptime_centis: 1234,
            udi: "CPAR:FCH1",
            message: "registration REGISTERING -> REGISTERED",
            alarm,
        }
    }

    #[test]
    fn a_trap_decodes_as_an_snmpv2c_trap_with_its_bindings() {
        let alarm = registration();
        let bytes = encode("public", &content(&alarm)).unwrap();
        // The message framing, by hand: SEQUENCE, version 1, the community, the trap PDU [7].
        assert_eq!(bytes[0], 0x30);
        let decoded: Message<Pdus> = rasn::ber::decode(&bytes).unwrap();
        assert_eq!(decoded.version, Integer::from(1));
        assert_eq!(decoded.community.as_ref(), b"public");
        let Pdus::Trap(Trap(pdu)) = decoded.data else {
            panic!("not a trap: {:?}", decoded.data)
        };
        assert_eq!(pdu.request_id, 7);
        let names: Vec<Vec<u32>> = pdu
            .variable_bindings
            .iter()
            .map(|b| b.name.to_vec())
            .collect();
        assert_eq!(
            names,
            [
                SYS_UP_TIME.to_vec(),
                SNMP_TRAP_OID.to_vec(),
                object(1),
                object(2),
                object(7),
                object(8)
            ]
        );
        assert_eq!(
            pdu.variable_bindings[1].value,
            VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::ObjectId(
                oid(vec![1, 3, 6, 1, 4, 1, 32473, 1, 0, 6]).unwrap()
            )))
        );
        assert_eq!(
            pdu.variable_bindings[3].value,
            VarBindValue::Value(text(content(&alarm).message))
        );
    }

    #[test]
    fn usage_traps_carry_the_level_and_rates() {
        for (threshold, kind) in [
            (80, TrapKind::Usage80),
            (90, TrapKind::Usage90),
            (100, TrapKind::Usage100),
        ] {
            let alarm = Alarm::Usage {
                threshold,
                percent: threshold,
                tag: "PAR-TPS".into(),
                offered_tps: 5_000_000_000,
                licensed_tps: 100,
            };
            assert_eq!(TrapKind::of(&alarm), kind);
            let decoded: Message<Pdus> =
                rasn::ber::decode(&encode("c", &content(&alarm)).unwrap()).unwrap();
            let Pdus::Trap(Trap(pdu)) = decoded.data else {
                panic!("not a trap")
            };
            assert_eq!(pdu.variable_bindings.len(), 8);
            assert_eq!(
                pdu.variable_bindings[5].value,
                VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::Integer(Integer::from(
                    i64::from(threshold)
                ))))
            );
            assert_eq!(
                pdu.variable_bindings[6].value,
                VarBindValue::Value(ObjectSyntax::ApplicationWide(ApplicationSyntax::Unsigned(
                    Gauge(u32::MAX)
                ))),
                "an offered rate past 2^32 - 1 saturates"
            );
        }
    }

    #[test]
    fn long_texts_are_cut_to_255_bytes_on_a_character_boundary() {
        let ObjectSyntax::Simple(SimpleSyntax::String(s)) = text(&"é".repeat(200)) else {
            panic!()
        };
        assert_eq!(s.len(), 254);
        assert!(std::str::from_utf8(&s).is_ok());
    }
}
