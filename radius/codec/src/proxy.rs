//! Proxy-State (RFC 2865 §5.33): a proxy appends its own to a request it forwards; the
//! server copies every Proxy-State of a request into its reply, in order
//! ([`Packet::reply`]); the proxy takes its own, the last one, off the reply before passing
//! it back. Others' stay, in order.

use crate::attribute::{Attribute, PROXY_STATE};
use crate::packet::Packet;

impl Packet {
    /// Appends a Proxy-State after every other attribute. Its length is checked when the
    /// packet is encoded (at most 253 octets).
    pub fn push_proxy_state(&mut self, state: impl Into<Vec<u8>>) {
        self.push(Attribute::new(PROXY_STATE, state));
    }

    /// The value of the last Proxy-State: the one the nearest proxy added.
    pub fn last_proxy_state(&self) -> Option<&[u8]> {
        self.attributes
            .iter()
            .rev()
            .find(|a| a.kind == PROXY_STATE)
            .map(|a| a.value.as_slice())
    }

    /// Removes the last Proxy-State and returns its value.
    pub fn pop_proxy_state(&mut self) -> Option<Vec<u8>> {
        let index = self
            .attributes
            .iter()
            .rposition(|a| a.kind == PROXY_STATE)?;
        Some(self.attributes.remove(index).value)
    }

    /// The values of every Proxy-State, in order.
    pub fn proxy_states(&self) -> impl Iterator<Item = &[u8]> {
        self.get_all(PROXY_STATE).map(|a| a.value.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use crate::attribute::{Attribute, PROXY_STATE, REPLY_MESSAGE};
    use crate::code::Code;
    use crate::packet::Packet;

    #[test]
    fn the_last_one_is_the_nearest_proxys() {
        let mut packet = Packet::new(Code::AccessAccept, 1, [0; 16]);
        assert_eq!(packet.last_proxy_state(), None);
        assert_eq!(packet.pop_proxy_state(), None);
        packet.push_proxy_state("first");
        packet.push(Attribute::new(REPLY_MESSAGE, "hello"));
        packet.push_proxy_state("second");
        packet.push(Attribute::new(REPLY_MESSAGE, "bye"));
        assert_eq!(packet.last_proxy_state(), Some(&b"second"[..]));
        let all: Vec<&[u8]> = packet.proxy_states().collect();
        assert_eq!(all, [&b"first"[..], b"second"]);
        assert_eq!(packet.pop_proxy_state(), Some(b"second".to_vec()));
        assert_eq!(packet.last_proxy_state(), Some(&b"first"[..]));
        // Everything else keeps its order.
        let kinds: Vec<u8> = packet.attributes.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [PROXY_STATE, REPLY_MESSAGE, REPLY_MESSAGE]);
    }
}
