//! The rules for names, label keys and label values (upstream's
//! apimachinery/pkg/util/validation): a leaf that both validation and the selectors read.

const DNS1123_LABEL_MAX: usize = 63;
/// The longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Problems with a label of at most 63 lower-case alphanumerics and `-`, starting with a
/// character `first` accepts and ending with an alphanumeric; `shape` is upstream's
/// sentence for the pattern.
fn label_errors(value: &str, first: fn(char) -> bool, shape: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    let ok = !value.is_empty()
        && value.chars().all(|c| is_alnum_lower(c) || c == '-')
        && value.starts_with(first)
        && value.ends_with(is_alnum_lower);
    if !ok {
        errs.push(shape.to_owned());
    }
    errs
}

/// Problems with a DNS-1123 label (`my-name`), empty when valid.
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    label_errors(
        value,
        is_alnum_lower,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    )
}

/// Problems with a DNS-1035 label (`my-name`, starting with a letter), empty when valid.
pub fn dns1035_label_errors(value: &str) -> Vec<String> {
    label_errors(
        value,
        |c| c.is_ascii_lowercase(),
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    )
}

/// Problems with a DNS-1123 subdomain (`example.com`), empty when valid.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    let ok = !value.is_empty()
        && value.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| is_alnum_lower(c) || c == '-')
                && part.starts_with(is_alnum_lower)
                && part.ends_with(is_alnum_lower)
        });
    if !ok {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    errs
}

fn qualified_name_part_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Problems with a label or annotation key (`[prefix/]name`), empty when valid.
pub fn label_key_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix
        && !dns1123_subdomain_errors(prefix).is_empty()
    {
        errs.push("prefix part must be a lowercase RFC 1123 subdomain".into());
    }
    if !qualified_name_part_ok(name) {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), at most 63 characters".into());
    }
    errs
}

/// Problems with a label value, empty when valid (empty values are valid).
pub fn label_value_errors(value: &str) -> Vec<String> {
    if value.is_empty() || qualified_name_part_ok(value) {
        Vec::new()
    } else {
        vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'), at most 63 characters".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_both_rules() {
        for ok in ["a", "my-name", "abc-123"] {
            assert!(dns1123_label_errors(ok).is_empty(), "{ok}");
            assert!(dns1035_label_errors(ok).is_empty(), "{ok}");
        }
        // Only DNS-1123 allows a leading digit.
        assert!(dns1123_label_errors("123-abc").is_empty());
        assert_eq!(dns1035_label_errors("123-abc").len(), 1);
        for bad in ["", "-a", "a-", "A", "a_b"] {
            assert_eq!(dns1123_label_errors(bad).len(), 1, "{bad}");
            assert_eq!(dns1035_label_errors(bad).len(), 1, "{bad}");
        }
        let long = "a".repeat(64);
        assert_eq!(dns1123_label_errors(&long), vec!["must be no more than 63 characters"]);
    }
}
