//! The form of an ID token, `<id>.<secret>`, as the operator types it at registration.
//!
//! Pure text checks, with no store behind them: whether the id is known and the secret
//! matches is the authority's ledger's business.
//!
//! ```
//! use entitle_codes::token::{TokenError, parse_token};
//!
//! assert_eq!(parse_token("3f2a9c01b7de.c2VjcmV0"), Ok(("3f2a9c01b7de", "c2VjcmV0")));
//! assert_eq!(parse_token("3f2a9c01b7de"), Err(TokenError::NoDot));
//! assert_eq!(parse_token(".c2VjcmV0"), Err(TokenError::EmptyId));
//! ```

/// The longest ID token accepted, in bytes (those the authority issues have 45).
pub const MAX_TOKEN_LEN: usize = 128;

/// Why a text is not an ID token.
///
/// Every variant shows the same message: the operator can only type the token again, and a
/// more precise message would say nothing useful about a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `.` separates the id from the secret.
    #[error("the ID token is malformed: expected <id>.<secret>")]
    NoDot,
    /// Nothing before the first `.`.
    #[error("the ID token is malformed: expected <id>.<secret>")]
    EmptyId,
    /// Nothing after the first `.`.
    #[error("the ID token is malformed: expected <id>.<secret>")]
    EmptySecret,
    /// Longer than [`MAX_TOKEN_LEN`] bytes.
    #[error("the ID token is malformed: expected <id>.<secret>")]
    TooLong,
}

/// Splits an ID token at its first `.` into its public id and its secret, both non-empty;
/// the secret may hold further dots.
pub fn parse_token(token: &str) -> Result<(&str, &str), TokenError> {
    let (id, secret) = token.split_once('.').ok_or(TokenError::NoDot)?;
    if id.is_empty() {
        return Err(TokenError::EmptyId);
    }
    if secret.is_empty() {
        return Err(TokenError::EmptySecret);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_splits_into_id_and_secret() {
        // The shape create_token issues: 12 hex digits, a dot, 32 base64url characters.
        let token = "3f2a9c01b7de.AbCdEfGhIjKlMnOpQrStUvWxYz0123-_";
        assert_eq!(
            parse_token(token),
            Ok(("3f2a9c01b7de", "AbCdEfGhIjKlMnOpQrStUvWxYz0123-_"))
        );
    }

    #[test]
    fn malformed_tokens_are_refused_with_their_reason() {
        for (token, error) in [
            ("", TokenError::NoDot),
            ("3f2a9c01b7de", TokenError::NoDot),
            ("3f2a9c01b7de secret", TokenError::NoDot),
            (".secret", TokenError::EmptyId),
            (".", TokenError::EmptyId),
            ("..", TokenError::EmptyId),
            ("3f2a9c01b7de.", TokenError::EmptySecret),
        ] {
            assert_eq!(parse_token(token), Err(error), "{token:?}");
        }
    }

    #[test]
    fn the_length_limit_counts_bytes() {
        let fits = format!("id.{}", "s".repeat(MAX_TOKEN_LEN - 3));
        assert_eq!(parse_token(&fits), Ok(("id", &fits[3..])));
        let over = format!("id.{}", "s".repeat(MAX_TOKEN_LEN - 2));
        assert_eq!(parse_token(&over), Err(TokenError::TooLong));
        // 43 characters, 129 bytes: too long although it has fewer than 128 characters.
        let wide = format!("id.{}", "€".repeat(43));
        assert!(wide.chars().count() < MAX_TOKEN_LEN && wide.len() > MAX_TOKEN_LEN);
        assert_eq!(parse_token(&wide), Err(TokenError::TooLong));
    }

    #[test]
    fn the_first_dot_splits_and_other_text_is_left_to_the_store() {
        assert_eq!(parse_token("id.se.cr.et"), Ok(("id", "se.cr.et")));
        assert_eq!(parse_token("id.."), Ok(("id", ".")));
        // Non-ASCII, spaces and NUL are not malformed here: no such id is ever issued, so the
        // store answers that the token is unknown.
        assert_eq!(parse_token("ïd.sécret"), Ok(("ïd", "sécret")));
        assert_eq!(parse_token(" id . s "), Ok((" id ", " s ")));
        assert_eq!(parse_token("id.\0"), Ok(("id", "\0")));
    }

    #[test]
    fn every_refusal_has_the_registration_message() {
        for error in [
            TokenError::NoDot,
            TokenError::EmptyId,
            TokenError::EmptySecret,
            TokenError::TooLong,
        ] {
            assert_eq!(
                error.to_string(),
                "the ID token is malformed: expected <id>.<secret>"
            );
        }
    }
}
