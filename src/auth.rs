//! Who may publish: the bearer token of `--publish-token`.
//!
//! ```text
//! POST /publish HTTP/1.1
//! Authorization: Bearer s3cret
//! ```

/// `Authorization: Bearer <token>`, compared in time that does not depend
/// on how much of the token matched (only on its length, which is no
/// secret worth keeping).
pub fn bearer_matches(authorization: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    constant_time_eq(value[7..].trim_ascii(), token.as_bytes())
}

/// Compares every byte whatever the earlier ones were, folding the
/// differences into one accumulator, so the time taken says nothing about
/// where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_bearer_token() {
        let cases: &[(Option<&[u8]>, bool)] = &[
            (Some(b"Bearer s3cret"), true),
            (Some(b"bearer s3cret"), true),
            (Some(b"Bearer s3cret "), true),
            (Some(b"Bearer s3cre"), false),
            (Some(b"Bearer s3cretX"), false),
            (Some(b"Basic s3cret"), false),
            (Some(b"Bearer"), false),
            (Some(b""), false),
            (None, false),
        ];
        for (header, want) in cases {
            assert_eq!(bearer_matches(*header, "s3cret"), *want, "{header:?}");
        }
    }
}
