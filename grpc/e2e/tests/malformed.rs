//! Hostile bytes at every device-facing parser of the authority: random ID tokens, random
//! signed envelopes for each signed request, random report streams. Each is refused with a
//! client-error status (never an internal error, never a panic), and nothing is written.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{TestAuthority, udi};
use entitle_proto::pb;
use tonic::Code;

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn vec(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, max: usize) -> String {
        let alphabet = b"abcXYZ019.-_'\\\";%\x00 \xc3\xa9";
        let len = (self.next() as usize) % (max + 1);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

const CLIENT_ERRORS: [Code; 6] = [
    Code::InvalidArgument,
    Code::Unauthenticated,
    Code::PermissionDenied,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::AlreadyExists,
];

#[tokio::test]
async fn random_input_is_refused_cleanly_and_writes_nothing() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(5).await;
    let mut genuine = authority.device().await;
    genuine.register(&token, udi("A1")).await.unwrap();
    let instance = genuine.instance().unwrap().to_owned();
    let audit = authority.audit_len().await;
    let mut random = Bytes(0x9e37_79b9_7f4a_7c15);
    let mut device = authority.device().await;

    for case in 0..200 {
        // Registration with a random token (sometimes a mangled real one).
        let token = match case % 3 {
            0 => random.text(80),
            1 => format!("{}.{}", token.split('.').next().unwrap(), random.text(40)),
            _ => {
                let mut t = token.clone().into_bytes();
                // One character changed (to a different one).
                let i = (random.next() as usize) % t.len();
                let changed = if t[i] == b'#' { b'%' } else { b'#' };
                t[i] = changed;
                String::from_utf8(t).unwrap()
            }
        };
        let err = device
            .register(&token, udi(&format!("R{case}")))
            .await
            .unwrap_err();
        let code = match &err {
            entitle_sidecar::device::DeviceError::Refused(s) => s.code(),
            other => panic!("case {case}: {other}"),
        };
        assert!(
            CLIENT_ERRORS.contains(&code),
            "case {case} token {token:?}: {code:?}"
        );

        // Random envelopes, and envelopes whose body names the real instance.
        let body = if case % 2 == 0 {
            random.vec(300)
        } else {
            let mut b = prost::Message::encode_to_vec(&pb::AuthorizeBody {
                instance_id: instance.clone(),
                counter: random.next(),
                requested: vec![],
            });
            b.extend(random.vec(8));
            b
        };
        let signed = pb::Signed {
            body,
            signature: random.vec(80),
            ..Default::default()
        };
        let client = device.client();
        for status in [
            client.authorize(signed.clone()).await.unwrap_err(),
            client.renew_id(signed.clone()).await.unwrap_err(),
            client.deregister(signed.clone()).await.unwrap_err(),
        ] {
            assert!(
                CLIENT_ERRORS.contains(&status.code()),
                "case {case}: {status:?}"
            );
        }
        let (acks, err) = device.report(vec![signed]).await;
        assert!(acks.is_empty(), "case {case}");
        match err {
            Some(entitle_sidecar::device::DeviceError::Refused(s)) => {
                assert!(CLIENT_ERRORS.contains(&s.code()), "case {case}: {s:?}")
            }
            other => panic!("case {case}: {other:?}"),
        }
    }
    assert_eq!(authority.audit_len().await, audit, "nothing was written");
    // The genuine device is unharmed.
    genuine
        .authorize(common::counts(&[("PAR-TPS", 1)]))
        .await
        .unwrap();
}
