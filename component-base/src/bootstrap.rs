//! Bootstrap tokens, upstream's way to let a new node in: a `kube-system` Secret of type
//! `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>` holds a token
//! `<id>.<secret>`. The API server authenticates it as `system:bootstrap:<id>` in
//! `system:bootstrappers` (and the Secret's extra groups); the controller-manager signs
//! the `kube-public/cluster-info` ConfigMap with it (a detached JWS), so that a joining
//! node that holds the token and the CA's hash can trust what it reads there.

use base64::Engine;
use ring::hmac;

/// The Secret type of a bootstrap token.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Bootstrap token Secrets live here.
pub const NAMESPACE: &str = "kube-system";
/// The prefix of their names.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group every bootstrap token's user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The group kubeadm gives the tokens nodes join with.
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// Where the signed cluster information lives.
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
/// Its name.
pub const CLUSTER_INFO: &str = "cluster-info";
/// The prefix of its signatures' keys (`jws-kubeconfig-<id>`).
pub const JWS_PREFIX: &str = "jws-kubeconfig-";

/// A token split in its id and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Six characters `[a-z0-9]`; public (it names the Secret).
    pub id: String,
    /// Sixteen characters `[a-z0-9]`.
    pub secret: String,
}

impl Token {
    /// Parses `<id>.<secret>`, `None` unless it has upstream's shape.
    pub fn parse(token: &str) -> Option<Token> {
        let (id, secret) = token.split_once('.')?;
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        (ok(id, 6) && ok(secret, 16)).then(|| Token { id: id.to_owned(), secret: secret.to_owned() })
    }

    /// A new random token.
    pub fn generate() -> anyhow::Result<Token> {
        use ring::rand::SecureRandom;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let rng = ring::rand::SystemRandom::new();
        let pick = |n: usize| -> anyhow::Result<String> {
            let mut out = String::with_capacity(n);
            while out.len() < n {
                let mut b = [0u8; 1];
                rng.fill(&mut b).map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
                // 252 = 7 × 36: rejecting the rest keeps every character equally likely.
                if b[0] < 252 {
                    out.push(ALPHABET[usize::from(b[0]) % ALPHABET.len()] as char);
                }
            }
            Ok(out)
        };
        Ok(Token { id: pick(6)?, secret: pick(16)? })
    }

    /// The name of the Secret that holds it.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn equal_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The detached JWS (`header..signature`, HS256, keyed by the whole token, `kid` its id)
/// of `content`: what goes in `cluster-info` under `jws-kubeconfig-<id>`.
pub fn sign(content: &str, token: &Token) -> String {
    let header = b64url(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id).as_bytes());
    let payload = b64url(content.as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.to_string().as_bytes());
    let tag = hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    format!("{header}..{}", b64url(tag.as_ref()))
}

/// Whether `jws` is `content` signed with `token`.
pub fn verify(content: &str, jws: &str, token: &Token) -> bool {
    let Some((header, signature)) = jws.split_once("..") else { return false };
    let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else { return false };
    let payload = b64url(content.as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.to_string().as_bytes());
    hmac::verify(&key, format!("{header}.{payload}").as_bytes(), &signature).is_ok()
}

/// Upstream's `--discovery-token-ca-cert-hash`: `sha256:` and the hex SHA-256 of the CA
/// certificate's SubjectPublicKeyInfo.
pub fn ca_hash(ca_pem: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parsing the CA")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("parsing the CA certificate")?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Ok(format!("sha256:{}", digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_upstreams_shape() {
        let t = Token::generate().expect("generate");
        assert_eq!(Token::parse(&t.to_string()), Some(t.clone()));
        assert_eq!(t.secret_name().len(), SECRET_PREFIX.len() + 6);
        assert!(Token::parse("abcdef.0123456789abcdef").is_some());
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde_",
            "",
        ] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
        assert_ne!(Token::generate().expect("generate"), t);
    }

    #[test]
    fn a_signature_verifies_only_with_its_token_and_content() {
        let t = Token::parse("abcdef.0123456789abcdef").expect("token");
        let jws = sign("kubeconfig", &t);
        assert!(jws.contains(".."));
        assert!(verify("kubeconfig", &jws, &t));
        assert!(!verify("kubeconfig, altered", &jws, &t));
        let other = Token::parse("abcdef.0123456789abcdeg").expect("token");
        assert!(!verify("kubeconfig", &jws, &other));
        assert!(!verify("kubeconfig", "garbage", &t));
    }

    #[test]
    fn the_ca_hash_is_of_the_public_key() {
        let ca = crate::pki::Ca::generate("test", std::time::Duration::from_secs(3600)).expect("ca");
        let h = ca_hash(&ca.cert_pem).expect("hash");
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64, "{h}");
        assert_eq!(ca_hash(&ca.cert_pem).expect("hash"), h);
        assert!(equal_secret(b"abc", b"abc") && !equal_secret(b"abc", b"abd") && !equal_secret(b"ab", b"abc"));
    }
}
