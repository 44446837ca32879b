//! `--enable-bootstrap-token-auth`: a bearer token `<id>.<secret>` is the user
//! `system:bootstrap:<id>` when the `kube-system` Secret `bootstrap-token-<id>` (of type
//! `bootstrap.kubernetes.io/token`) holds that secret, allows authentication, and has not
//! expired. Read from the secrets' watch cache, as every credential check is.

use std::sync::Arc;

use base64::Engine;
use component_base::bootstrap::{self, Token};
use serde_json::Value;

use crate::authn::UserInfo;
use crate::cache::WatchCache;

/// Authenticates bootstrap tokens.
pub struct BootstrapTokens {
    secrets: Arc<WatchCache>,
    key_prefix: String,
}

impl BootstrapTokens {
    /// Reads tokens from `secrets`, the cache of the secrets stored under `key_prefix`
    /// (`/registry/secrets/`).
    pub fn new(secrets: Arc<WatchCache>) -> BootstrapTokens {
        let key_prefix = secrets.prefix().to_owned();
        BootstrapTokens { secrets, key_prefix }
    }

    /// Whether `token` has a bootstrap token's shape (else another authenticator is asked).
    pub fn looks_like(token: &str) -> bool {
        Token::parse(token).is_some()
    }

    /// The user of `token`, or why it is refused (for the log; the client sees 401).
    pub fn authenticate(&self, token: &str) -> Result<UserInfo, String> {
        let token = Token::parse(token).ok_or("not a bootstrap token")?;
        let name = token.secret_name();
        let key = format!("{}{}/{name}", self.key_prefix, bootstrap::NAMESPACE);
        let secret = self
            .secrets
            .get(&key)
            .and_then(|c| c.value())
            .ok_or_else(|| format!("no bootstrap token with id {:?}", token.id))?;
        check(&secret, &token, jiff::Timestamp::now())
    }
}

fn data(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Upstream's checks of a token against its Secret, with `now` for its expiry.
fn check(secret: &Value, token: &Token, now: jiff::Timestamp) -> Result<UserInfo, String> {
    let id = &token.id;
    if secret.get("type").and_then(Value::as_str) != Some(bootstrap::SECRET_TYPE) {
        return Err(format!("the secret of bootstrap token {id:?} is not of type {}", bootstrap::SECRET_TYPE));
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return Err(format!("bootstrap token {id:?} is being deleted"));
    }
    let stored = data(secret, "token-secret").unwrap_or_default();
    if !bootstrap::equal_secret(stored.as_bytes(), token.secret.as_bytes()) {
        return Err(format!("the secret of bootstrap token {id:?} does not match"));
    }
    if data(secret, "token-id").is_some_and(|stored| stored != *id) {
        return Err(format!("the secret of bootstrap token {id:?} names another token id"));
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(format!("bootstrap token {id:?} may not be used for authentication"));
    }
    if let Some(expiration) = data(secret, "expiration") {
        let at: jiff::Timestamp =
            expiration.parse().map_err(|_| format!("bootstrap token {id:?} has an unreadable expiration"))?;
        if at <= now {
            return Err(format!("bootstrap token {id:?} expired at {expiration}"));
        }
    }
    let mut groups = vec![bootstrap::GROUP.to_owned()];
    for g in data(secret, "auth-extra-groups").unwrap_or_default().split(',').map(str::trim).filter(|g| !g.is_empty()) {
        // Upstream's rule: a token's extra groups are bootstrappers' groups, nothing more.
        let valid = g.strip_prefix("system:bootstrappers:").is_some_and(|rest| {
            !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        });
        if !valid {
            return Err(format!(
                "bootstrap token {id:?} names an extra group that is not a bootstrappers' group: {g:?}"
            ));
        }
        groups.push(g.to_owned());
    }
    Ok(UserInfo::authenticated(format!("system:bootstrap:{id}"), String::new(), groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
            "auth-extra-groups": b64(bootstrap::DEFAULT_NODE_GROUP),
        });
        for (k, v) in extra {
            data[*k] = json!(b64(v));
        }
        json!({"type": bootstrap::SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    #[test]
    fn a_valid_token_is_its_bootstrapper_and_the_rest_are_refused() {
        let token = Token::parse("abcdef.0123456789abcdef").expect("token");
        let now = jiff::Timestamp::now();
        let user = check(&secret(&[]), &token, now).expect("valid");
        assert_eq!(user.username, "system:bootstrap:abcdef");
        assert!(user.groups.contains(&bootstrap::GROUP.to_owned()));
        assert!(user.groups.contains(&bootstrap::DEFAULT_NODE_GROUP.to_owned()));

        let wrong = Token::parse("abcdef.0123456789abcdeg").expect("token");
        assert!(check(&secret(&[]), &wrong, now).expect_err("wrong").contains("does not match"));
        let expired = secret(&[("expiration", "2020-01-01T00:00:00Z")]);
        assert!(check(&expired, &token, now).expect_err("expired").contains("expired"));
        let future = secret(&[("expiration", "2999-01-01T00:00:00Z")]);
        assert!(check(&future, &token, now).is_ok());
        let no_auth = secret(&[("usage-bootstrap-authentication", "false")]);
        assert!(check(&no_auth, &token, now).expect_err("usage").contains("authentication"));
        let masters = secret(&[("auth-extra-groups", "system:masters")]);
        assert!(check(&masters, &token, now).expect_err("group").contains("system:masters"));
        let mut opaque = secret(&[]);
        opaque["type"] = json!("Opaque");
        assert!(check(&opaque, &token, now).is_err());
    }
}
