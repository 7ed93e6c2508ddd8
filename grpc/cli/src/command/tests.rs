//! Unit tests of [`super`].

#![allow(clippy::unwrap_used)]

use super::*;

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn ok(line: &str) -> Command {
    parse(&words(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn err(line: &str) -> String {
    parse(&words(line)).unwrap_err().to_string()
}

#[test]
fn every_command_parses() {
    assert_eq!(
        ok("license smart register abc.DEF-123"),
        Command::Register {
            id_token: "abc.DEF-123".into()
        }
    );
    assert_eq!(ok("license smart deregister"), Command::Deregister);
    assert_eq!(ok("license smart renew id"), Command::RenewId);
    assert_eq!(ok("license smart renew auth"), Command::RenewAuth);
    assert_eq!(ok("license smart trust renew"), Command::RenewTrust);
    assert_eq!(
        ok("callhome destination proxy http://u:p@127.0.0.1:3128"),
        Command::SetCallHomeProxy {
            url: Some("http://u:p@127.0.0.1:3128".into())
        }
    );
    assert_eq!(
        ok("no callhome destination proxy"),
        Command::SetCallHomeProxy { url: None }
    );
    assert_eq!(
        parse(&["callhome", "destination", "proxy", "https://p:1"]),
        Err(ParseError::BadProxy("https://p:1".into()))
    );
    assert_eq!(
        ok("license selection PAR-TPS 3"),
        Command::SetSelection {
            tag: "PAR-TPS".into(),
            count: 3
        }
    );
    assert_eq!(
        ok("no license selection PAR-ADD-TPS"),
        Command::RemoveSelection {
            tag: "PAR-ADD-TPS".into()
        }
    );
    assert_eq!(
        ok("callhome destination address http https://cssm.example/its"),
        Command::SetCallHome {
            url: "https://cssm.example/its".into()
        }
    );
    assert_eq!(ok("show license status"), Command::Show(Show::Status));
    assert_eq!(ok("show license summary"), Command::Show(Show::Summary));
    assert_eq!(ok("show license usage"), Command::Show(Show::Usage));
    assert_eq!(ok("show license selection"), Command::Show(Show::Selection));
    assert_eq!(ok("show license eventlog"), Command::Show(Show::EventLog));
    assert_eq!(ok("help"), Command::Help);
    assert_eq!(ok("exit"), Command::Exit);
    assert_eq!(ok("quit"), Command::Exit);
}

#[test]
fn reservation_commands_parse() {
    assert_eq!(ok("license smart reservation"), Command::ReservationEnable);
    assert_eq!(
        ok("no license smart reservation"),
        Command::ReservationDisable
    );
    assert_eq!(
        ok("license smart reservation request"),
        Command::ReservationRequest
    );
    assert_eq!(
        ok("license smart reservation cancel"),
        Command::ReservationCancel
    );
    assert_eq!(
        ok("license smart reservation install SLR1.abc def.ghi"),
        Command::ReservationInstall {
            code: "SLR1.abcdef.ghi".into()
        },
        "a code pasted in pieces is joined"
    );
    assert_eq!(
        ok("license smart reservation return"),
        Command::ReservationReturn { code: None }
    );
    assert_eq!(
        ok("license smart reservation return authorization X1"),
        Command::ReservationReturn {
            code: Some("X1".into())
        }
    );
    assert_eq!(
        ok("show license reservation"),
        Command::Show(Show::Reservation)
    );
}

#[test]
fn malformed_commands_get_precise_sentences() {
    let cases = [
        ("", "no command given; try `help`"),
        ("foo", "unknown command `foo`; try `help`"),
        ("license", "`license` needs `smart` or `selection`"),
        (
            "license smart",
            "`license smart` needs `register`, `deregister`, `renew`, `reservation` or `trust`",
        ),
        (
            "license smart reservation foo",
            "unknown command `license smart reservation foo`; `license smart reservation` takes `request`, `install`, `return` or `cancel`",
        ),
        (
            "license smart reservation install",
            "`license smart reservation install` needs an authorization code",
        ),
        (
            "license smart reservation return code",
            "unknown command `license smart reservation return code`; `license smart reservation return` takes `authorization`",
        ),
        (
            "license smart reservation request now",
            "`license smart reservation request` takes nothing more, got `now`",
        ),
        ("no license smart", "`no license smart` needs `reservation`"),
        (
            "license smart register",
            "`license smart register` needs an ID token",
        ),
        (
            "license smart renew",
            "`license smart renew` needs `id` or `auth`",
        ),
        (
            "license smart renew everything",
            "unknown command `license smart renew everything`; `license smart renew` takes `id` or `auth`",
        ),
        (
            "license smart deregister now",
            "`license smart deregister` takes nothing more, got `now`",
        ),
        (
            "license selection",
            "`license selection` needs a licence tag",
        ),
        (
            "license selection PAR-TPS",
            "`license selection PAR-TPS` needs a count",
        ),
        (
            "license selection PAR-TPS x",
            "count must be a whole number, got `x`",
        ),
        (
            "license selection PAR-TPS -1",
            "count must be a whole number, got `-1`",
        ),
        (
            "license selection PAR-TPS 1.5",
            "count must be a whole number, got `1.5`",
        ),
        (
            "license selection PAR-TPS 99999999999999999999",
            "count must be a whole number, got `99999999999999999999`",
        ),
        (
            "license selection PAR-TPS 1 2",
            "`license selection PAR-TPS 1` takes nothing more, got `2`",
        ),
        (
            "license selection PAR/TPS 1",
            "`PAR/TPS` is not a licence tag: use 1 to 64 letters, digits and `- _ . :` (such as `PAR-TPS`)",
        ),
        ("no", "`no` needs `license` or `callhome`"),
        (
            "no license selection",
            "`no license selection` needs a licence tag",
        ),
        (
            "no license smart reservation now",
            "`no license smart reservation` takes nothing more, got `now`",
        ),
        (
            "callhome destination address http",
            "`callhome destination address http` needs a URL",
        ),
        (
            "callhome destination address http ftp://x",
            "`ftp://x` is not an http:// or https:// URL",
        ),
        (
            "callhome destination address https https://x",
            "unknown command `callhome destination address https`; `callhome destination address` takes `http`",
        ),
        ("show", "`show` needs `license`"),
        (
            "show license",
            "`show license` needs `status`, `summary`, `usage`, `selection`, `reservation` or `eventlog`",
        ),
        (
            "show license reservations",
            "unknown command `show license reservations`; `show license` takes `status`, `summary`, `usage`, `selection`, `reservation` or `eventlog`",
        ),
        ("Show license status", "unknown command `Show`; try `help`"),
        ("help me", "`help` takes nothing more, got `me`"),
    ];
    for (line, expected) in cases {
        assert_eq!(err(line), expected, "{line:?}");
    }
}

#[test]
fn a_count_of_zero_is_a_removal_the_sidecar_understands() {
    assert_eq!(
        ok("license selection PAR-TPS 0"),
        Command::SetSelection {
            tag: "PAR-TPS".into(),
            count: 0
        }
    );
}

#[test]
fn blank_lines_and_comments_are_skipped() {
    assert_eq!(split_line(""), Ok(None));
    assert_eq!(split_line("   \t \r\n"), Ok(None));
    assert_eq!(split_line("# a script"), Ok(None));
    assert_eq!(split_line("  #indented"), Ok(None));
    assert_eq!(
        split_line(" show  license\tstatus  # why\r\n"),
        Ok(Some(vec!["show".into(), "license".into(), "status".into()]))
    );
}

#[test]
fn words_are_quoted_as_a_shell_quotes_them() {
    let words = |line: &str| split_line(line).unwrap().unwrap();
    assert_eq!(
        words(r#"license smart register "abc def""#),
        ["license", "smart", "register", "abc def"]
    );
    assert_eq!(
        parse(&words(r#"license smart register "abc def""#)),
        Ok(Command::Register {
            id_token: "abc def".into()
        })
    );
    assert_eq!(words(r"register 'a b'\ c"), ["register", "a b c"]);
    assert_eq!(
        words(r#"x "it's" 'say "hi"' a\#b"#),
        ["x", "it's", r#"say "hi""#, "a#b"]
    );
    assert_eq!(
        words(r##"show "#not a comment""##),
        ["show", "#not a comment"]
    );
    assert_eq!(
        words(r"register abc\"),
        ["register", r"abc\"],
        "a lone backslash stays"
    );
    for bad in [r#"register "abc"#, "register 'abc", r#"register "a'b"#] {
        assert_eq!(split_line(bad), Err(ParseError::Quote), "{bad}");
    }
    assert_eq!(
        ParseError::Quote.to_string(),
        "the line has an unmatched quote"
    );
}

#[test]
fn completion_offers_the_keywords_that_can_come_next() {
    assert_eq!(
        complete::<&str>(&[], ""),
        ["license", "no", "callhome", "show", "help", "exit", "quit"]
    );
    assert_eq!(complete(&["license"], ""), ["smart", "selection"]);
    assert_eq!(
        complete(&["license", "smart"], "re"),
        ["register", "renew", "reservation"]
    );
    assert_eq!(complete(&["license", "smart", "renew"], ""), ["id", "auth"]);
    assert_eq!(
        complete(&["license", "smart", "t"], ""),
        Vec::<String>::new()
    );
    assert_eq!(complete(&["license", "smart"], "t"), ["trust"]);
    assert_eq!(complete(&["license", "smart", "trust"], ""), ["renew"]);
    assert_eq!(
        complete(&["license", "smart", "reservation", "return"], "a"),
        ["authorization"]
    );
    assert_eq!(complete(&["show", "license"], "ev"), ["eventlog"]);
    assert_eq!(
        complete(&["callhome", "destination", "address"], ""),
        ["http"]
    );
    assert!(
        complete(&["show", "licence"], "").is_empty(),
        "a misspelt keyword"
    );
    assert!(
        complete(&["license", "selection"], "").is_empty(),
        "a value comes next"
    );
}

/// Every keyword path of the completion tree parses as far as it goes: the parser knows
/// each keyword where the tree offers it.
#[test]
fn the_completion_tree_matches_the_parser() {
    fn walk(path: &mut Vec<&'static str>, level: &'static [Keyword]) -> usize {
        let mut paths = 0;
        for keyword in level {
            path.push(keyword.word);
            match parse(path) {
                Ok(_) | Err(ParseError::Missing { .. }) => {}
                Err(e) => panic!("{path:?}: {e}"),
            }
            paths += 1 + walk(path, keyword.next);
            path.pop();
        }
        paths
    }
    assert_eq!(walk(&mut Vec::new(), GRAMMAR), 40);
}

mod random {
    use proptest::prelude::*;

    use super::super::parse;

    /// Keywords of the grammar and values of every kind, so random sequences reach deep.
    const VOCABULARY: &[&str] = &[
        "license",
        "smart",
        "register",
        "deregister",
        "renew",
        "id",
        "auth",
        "trust",
        "proxy",
        "selection",
        "no",
        "callhome",
        "destination",
        "address",
        "http",
        "show",
        "status",
        "summary",
        "usage",
        "help",
        "exit",
        "quit",
        "reservation",
        "PAR-TPS",
        "0",
        "18446744073709551616",
        "-3",
        "http://x",
        "",
        "`",
        "é",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(VOCABULARY).prop_map(str::to_owned),
            1 => any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_words_never_panic_and_errors_are_one_line(
            words in proptest::collection::vec(word(), 0..8)
        ) {
            if let Err(e) = parse(&words) {
                let sentence = e.to_string();
                prop_assert!(!sentence.is_empty());
                // One line unless the operator's own words carried a newline.
                if !words.iter().any(|w| w.contains(['\n', '\r'])) {
                    prop_assert!(!sentence.contains('\n'), "{}", sentence);
                }
            }
        }
    }
}
