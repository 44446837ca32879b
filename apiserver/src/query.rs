//! Query parameters read the way upstream reads them, shared by the router and the
//! request limits (which must agree on what a watch is).

/// A boolean parameter's truth, by Go's `strconv.ParseBool` (what upstream's query
/// decoding uses): `1`, `t`, `T`, `true`, `TRUE`, `True`.
pub fn truthy(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Whether a GET with these query pairs is a watch (`watch=true`) or a followed log
/// (`follow=true`): long-running requests, streamed until the client leaves.
pub fn streams<'a>(mut pairs: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    pairs.any(|(k, v)| matches!(k, "watch" | "follow") && truthy(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(truthy(t), "{t}");
        }
        for f in ["", "0", "false", "yes", "tru", "True "] {
            assert!(!truthy(f), "{f}");
        }
        assert!(streams([("limit", "5"), ("watch", "1")].into_iter()));
        assert!(streams([("follow", "true")].into_iter()));
        assert!(!streams([("watchful", "true"), ("watch", "false")].into_iter()));
    }
}
