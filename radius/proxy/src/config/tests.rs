//! Unit tests of [`super`].

use super::*;

fn base() -> String {
    r#"
        listen = ["127.0.0.1:0"]
        [[client]]
        name = "a"
        address = "10.0.0.0/8"
        secret = "s"
        [[upstream]]
        name = "u"
        auth = "127.0.0.1:1812"
        secret = "t"
        [licence]
        mode = "attached"
        sidecar_url = "http://127.0.0.1:7070"
        "#
    .to_owned()
}

fn validate(text: &str) -> Result<Config> {
    toml::from_str::<RawConfig>(text)
        .map_err(|e| Error::Config(e.to_string()))?
        .validate()
}

#[test]
fn networks() {
    let n = Network::parse("10.0.0.0/8").expect("network");
    assert!(n.contains("10.1.2.3".parse().expect("ip")));
    assert!(!n.contains("11.0.0.1".parse().expect("ip")));
    assert!(n.contains("::ffff:10.0.0.1".parse().expect("ip")));
    let one = Network::parse("127.0.0.1").expect("address");
    assert!(one.contains("127.0.0.1".parse().expect("ip")));
    assert!(!one.contains("127.0.0.2".parse().expect("ip")));
    assert!(
        Network::parse("0.0.0.0/0")
            .expect("all")
            .contains("1.2.3.4".parse().expect("ip"))
    );
    assert!(
        Network::parse("2001:db8::/32")
            .expect("v6")
            .contains("2001:db8::1".parse().expect("ip"))
    );
    for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/", "::/129"] {
        assert_eq!(Network::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn an_attached_proxy_reaches_the_sidecar_by_its_socket_or_by_tcp_with_the_credential() {
    let socket = validate(&base().replace(
        "http://127.0.0.1:7070",
        "unix:/var/lib/entitled/entitled.sock",
    ))
    .expect("a socket");
    assert!(matches!(
        socket.licence,
        Licence::Attached { ref url, credential: None, .. } if url == "unix:/var/lib/entitled/entitled.sock"
    ));
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("api.credential");
    entitle_proto::signing::write_secret(&file, b"c3dt\n").expect("written");
    let tcp = validate(&base().replace(
        "mode = \"attached\"",
        &format!("mode = \"attached\"\nsidecar_credential_file = {file:?}"),
    ))
    .expect("TCP with a credential");
    let Licence::Attached { credential, .. } = tcp.licence else {
        panic!("attached");
    };
    assert_eq!(credential.expect("read").expose(), "c3dt");
}

#[test]
fn the_base_is_valid_and_defaults_apply() {
    let config = validate(&base()).expect("valid");
    assert_eq!(config.counting.tag, "PAR-TPS");
    assert_eq!(config.reply_cache, Duration::from_secs(5));
    assert_eq!(config.upstreams[0].acct.port(), 1813);
    assert!(format!("{:?}", config.clients[0]).find("\"s\"").is_none());
}

#[test]
fn bad_configurations_say_what_is_wrong() {
    let cases = [
        (
            base().replace("\"10.0.0.0/8\"", "\"ten\""),
            "is not an IP address",
        ),
        (
            base().replace("secret = \"s\"", "secret = \"\""),
            "1 to 128",
        ),
        (base().replace("secret = \"t\"", ""), "needs secret"),
        (
            base().replace("mode = \"attached\"", "mode = \"embedded\""),
            "sidecar_url and sidecar_credential_file are for",
        ),
        (
            base().replace("http://127.0.0.1:7070", "ftp://sidecar"),
            "is not a sidecar address",
        ),
        (
            base().replace(
                "mode = \"attached\"",
                "mode = \"attached\"\nsidecar_credential_file = \"/nonexistent/api.credential\"",
            ),
            "licence.sidecar_credential_file: cannot use the sidecar credential",
        ),
        (
            base().replace("[licence]", "reply_cache_secs = 0\n[licence]"),
            "reply_cache_secs",
        ),
        (
            base().replace(
                "[licence]",
                "[over_licence]\nreply_message = \"x\"\n[licence]",
            ),
            "needs action",
        ),
        (
            base().replace("[licence]", "[counting]\ntag = \"bad tag\"\n[licence]"),
            "not an entitlement tag",
        ),
        (
            base().replace("auth = ", "timeout_ms = 1\nauth = "),
            "timeout_ms",
        ),
        (
            base().replace("listen = [\"127.0.0.1:0\"]", "listen = []"),
            "listen",
        ),
    ];
    for (text, expected) in cases {
        let error = validate(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
    assert!(
        toml::from_str::<RawConfig>(&base().replace("[licence]", "bogus = 1\n[licence]")).is_err()
    );
}

#[test]
fn secret_files_must_be_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-a-file\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = base().replace("secret = \"s\"", &format!("secret_file = {path:?}"));
    let error = validate(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("0600"), "{error}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(
        validate(&text).expect("valid").clients[0].secret.as_bytes(),
        b"from-a-file"
    );
}
