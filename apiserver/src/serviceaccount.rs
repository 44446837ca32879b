//! ServiceAccount tokens: ES256 JWTs with upstream's claims, signed with
//! `--service-account-signing-key-file` (kubeadm's `sa.key`) and checked against
//! `--service-account-key-file`. A token is bound to its service account, and to a pod,
//! secret or node when asked: it stops working when what it is bound to is gone (looked
//! up in the watch caches, never in storage). The public keys are served as upstream's
//! OIDC discovery (`/.well-known/openid-configuration`, `/openid/v1/jwks`).

use rustls_pki_types::pem::{PemObject, SectionKind};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::authn::{AUTHENTICATED, UserInfo};
use crate::cache::WatchCache;

/// Where a pod's service account credentials are mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap in every namespace with the cluster's CA (`ca.crt`), published by the
/// controller-manager.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// Upstream's default issuer.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// An object a token is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Bound {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: Bound,
    /// The pod it is bound to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<Bound>,
    /// The pod's node, or the node it is bound to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<Bound>,
    /// The secret it is bound to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<Bound>,
}

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// The issuer.
    pub iss: String,
    /// A unique id.
    pub jti: String,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// What it is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// One verifying key and its JWK.
struct PublicKey {
    kid: String,
    key: DecodingKey,
    jwk: Value,
}

/// Issues and checks tokens.
pub struct Tokens {
    issuer: String,
    audiences: Vec<String>,
    signing: Option<(EncodingKey, String)>,
    keys: Vec<PublicKey>,
    service_accounts: Option<Arc<WatchCache>>,
    pods: Option<Arc<WatchCache>>,
}

/// Where the keys come from.
#[derive(Debug, Clone, Default)]
pub struct TokenConfig {
    /// `--service-account-issuer`.
    pub issuer: String,
    /// `--api-audiences` (default: the issuer).
    pub audiences: Vec<String>,
    /// `--service-account-signing-key-file`: the private key (PKCS#8 EC P-256 PEM).
    pub signing_key_file: Option<std::path::PathBuf>,
    /// `--service-account-key-file`: public keys (PEM) that verify tokens.
    pub key_files: Vec<std::path::PathBuf>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER of an EC P-256 public key (SubjectPublicKeyInfo) before its point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A JWK of an EC P-256 public key in SPKI DER, and its key id (upstream's: the SHA-256 of
/// the DER, base64url).
fn jwk_of(spki_der: &[u8]) -> Result<(String, Value)> {
    anyhow::ensure!(
        spki_der.len() == 91 && spki_der[..26] == P256_SPKI_PREFIX && spki_der[26] == 4,
        "only EC P-256 public keys (ES256) are supported"
    );
    let point = &spki_der[26..];
    let kid = b64url(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref());
    let jwk = json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65])});
    Ok((kid, jwk))
}

/// The first PEM block of `kind` in `text`, DER.
fn pem_der(text: &str, kind: SectionKind) -> Option<Vec<u8>> {
    PemObject::pem_slice_iter(text.as_bytes())
        .filter_map(Result::ok)
        .find_map(|(k, der): (SectionKind, Vec<u8>)| (k == kind).then_some(der))
}

impl Tokens {
    /// Keys from files.
    pub fn load(config: &TokenConfig) -> Result<Tokens> {
        let issuer = if config.issuer.is_empty() { DEFAULT_ISSUER.to_owned() } else { config.issuer.clone() };
        let audiences = if config.audiences.is_empty() { vec![issuer.clone()] } else { config.audiences.clone() };
        let mut keys = Vec::new();
        for path in &config.key_files {
            keys.push(public_key(path)?);
        }
        let signing = match &config.signing_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let key = EncodingKey::from_ec_pem(text.as_bytes())
                    .with_context(|| format!("{}: not an EC P-256 private key (PKCS#8 PEM)", path.display()))?;
                let pair = rcgen_public(&text).with_context(|| path.display().to_string())?;
                let (kid, jwk) = jwk_of(&pair)?;
                if !keys.iter().any(|k: &PublicKey| k.kid == kid) {
                    let pem = format!(
                        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                        base64::engine::general_purpose::STANDARD.encode(&pair)
                    );
                    keys.push(PublicKey { kid: kid.clone(), key: DecodingKey::from_ec_pem(pem.as_bytes())?, jwk });
                }
                Some((key, kid))
            }
            None => None,
        };
        Ok(Tokens { issuer, audiences, signing, keys, service_accounts: None, pods: None })
    }

    /// Whether this server issues tokens.
    pub fn issues(&self) -> bool {
        self.signing.is_some()
    }

    /// The API's audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The caches tokens are checked against.
    pub fn with_caches(mut self, service_accounts: Arc<WatchCache>, pods: Arc<WatchCache>) -> Tokens {
        self.service_accounts = Some(service_accounts);
        self.pods = Some(pods);
        self
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let Some((key, kid)) = &self.signing else {
            return Err("this server has no --service-account-signing-key-file".into());
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| e.to_string())
    }

    /// New claims for `namespace/name` (uid `uid`), valid for `seconds` from now.
    pub fn claims(&self, namespace: &str, name: &str, uid: &str, audiences: Vec<String>, seconds: i64) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            aud: audiences,
            exp: now + seconds,
            iat: now,
            nbf: now,
            iss: self.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_owned(),
                serviceaccount: Bound { name: name.to_owned(), uid: uid.to_owned() },
                ..Default::default()
            },
        }
    }

    /// Whether a bearer token looks like one of ours (a JWT).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// The user of a token meant for one of `audiences`, or why it is refused.
    pub fn authenticate(&self, token: &str, audiences: &[String]) -> Result<UserInfo, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let candidates: Vec<&PublicKey> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| &k.kid == kid).collect(),
            None => self.keys.iter().collect(),
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut last = "no key verifies it".to_owned();
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return self.user_of(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("invalid bearer token: {last}"))
    }

    /// The user a valid token names, once what it is bound to is checked to still exist.
    fn user_of(&self, c: &Claims) -> Result<UserInfo, String> {
        let ns = &c.kubernetes.namespace;
        let sa = &c.kubernetes.serviceaccount;
        let current = |cache: &Option<Arc<WatchCache>>, kind: &str, name: &str| -> Result<Option<Value>, String> {
            let Some(cache) = cache else { return Ok(None) };
            let key = format!("{}{ns}/{name}", cache.prefix());
            match cache.get(&key).and_then(|o| o.value()) {
                Some(v) => Ok(Some(v)),
                None => Err(format!("{kind} \"{ns}/{name}\" not found")),
            }
        };
        let uid_of = |v: &Value| v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(account) = current(&self.service_accounts, "service account", &sa.name)?
            && uid_of(&account) != sa.uid
        {
            return Err(format!("service account UID ({}) does not match claim ({})", uid_of(&account), sa.uid));
        }
        let mut extra = std::collections::HashMap::new();
        if let Some(pod) = &c.kubernetes.pod {
            if let Some(found) = current(&self.pods, "pod", &pod.name)?
                && uid_of(&found) != pod.uid
            {
                return Err(format!("pod UID ({}) does not match claim ({})", uid_of(&found), pod.uid));
            }
            extra.insert("authentication.kubernetes.io/pod-name".to_owned(), vec![pod.name.clone()]);
            extra.insert("authentication.kubernetes.io/pod-uid".to_owned(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &c.kubernetes.node {
            extra.insert("authentication.kubernetes.io/node-name".to_owned(), vec![node.name.clone()]);
        }
        extra.insert("authentication.kubernetes.io/credential-id".to_owned(), vec![format!("JTI={}", c.jti)]);
        Ok(UserInfo {
            username: c.sub.clone(),
            uid: sa.uid.clone(),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), AUTHENTICATED.into()],
            extra,
        })
    }

    /// Upstream's ServiceAccount admission for a new pod: its service account defaults to
    /// `default`, and unless the pod or its account turns `automountServiceAccountToken`
    /// off, a projected volume with a bound token, the cluster's CA and the namespace is
    /// mounted in every container at [`MOUNT_PATH`].
    pub fn mount_credentials(&self, pod: &mut Value) {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
        let account = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        spec.insert("serviceAccountName".into(), json!(account));
        let pod_says = spec.get("automountServiceAccountToken").and_then(Value::as_bool);
        let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
        let account_says = self.service_accounts.as_ref().and_then(|cache| {
            let key = format!("{}{namespace}/{account}", cache.prefix());
            cache.get(&key)?.value()?.get("automountServiceAccountToken")?.as_bool()
        });
        if pod_says == Some(false) || (pod_says.is_none() && account_says == Some(false)) {
            return;
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
        let mounted = ["containers", "initContainers"].iter().any(|list| {
            spec.get(*list).and_then(Value::as_array).into_iter().flatten().any(|c| {
                c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten().any(|m| {
                    m.get("mountPath").and_then(Value::as_str).map(|p| p.trim_end_matches('/')) == Some(MOUNT_PATH)
                })
            })
        });
        if mounted {
            return;
        }
        let suffix: String =
            uuid::Uuid::new_v4().simple().to_string().chars().filter(char::is_ascii_alphanumeric).take(5).collect();
        let name = format!("kube-api-access-{suffix}");
        let volume = json!({"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}});
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(list) = volumes.as_array_mut() {
            list.push(volume);
        }
        for list in ["containers", "initContainers"] {
            for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                let Some(c) = c.as_object_mut() else { continue };
                let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
                }
            }
        }
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }
}

/// The SPKI DER of the public half of a PKCS#8 private key.
fn rcgen_public(private_pem: &str) -> Result<Vec<u8>> {
    let der = pem_der(private_pem, SectionKind::PrivateKey).context("no PKCS#8 private key in the file")?;
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| anyhow::anyhow!("not an EC P-256 key: {e}"))?;
    use ring::signature::KeyPair;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok(spki)
}

fn public_key(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let der = match pem_der(&text, SectionKind::PublicKey) {
        Some(der) => der,
        None => rcgen_public(&text).with_context(|| format!("{}: no PUBLIC KEY or PRIVATE KEY", path.display()))?,
    };
    let (kid, jwk) = jwk_of(&der).with_context(|| path.display().to_string())?;
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    Ok(PublicKey { kid, key: DecodingKey::from_ec_pem(pem.as_bytes())?, jwk })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &Path) -> TokenConfig {
        let pair = rcgen::KeyPair::generate().expect("key");
        std::fs::write(dir.join("sa.key"), pair.serialize_pem()).expect("write");
        std::fs::write(dir.join("sa.pub"), pair.public_key_pem()).expect("write");
        TokenConfig {
            issuer: String::new(),
            audiences: Vec::new(),
            signing_key_file: Some(dir.join("sa.key")),
            key_files: vec![dir.join("sa.pub")],
        }
    }

    #[test]
    fn a_signed_token_names_its_service_account_until_it_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let tokens = Tokens::load(&keys(dir.path())).expect("load");
        assert_eq!(tokens.jwks()["keys"].as_array().map(Vec::len), Some(1), "the signing key is the one key");
        let claims = tokens.claims("shop", "bot", "u1", tokens.audiences().to_vec(), 600);
        let token = tokens.sign(&claims).expect("sign");
        let user = tokens.authenticate(&token, tokens.audiences()).expect("valid");
        assert_eq!(user.username, "system:serviceaccount:shop:bot");
        assert!(user.groups.contains(&"system:serviceaccounts:shop".to_owned()));
        let other = tokens.authenticate(&token, &["https://elsewhere".to_owned()]);
        assert!(other.is_err(), "another audience");
        let mut old = claims.clone();
        old.exp = old.iat - 10;
        old.nbf = old.iat - 20;
        assert!(tokens.authenticate(&tokens.sign(&old).expect("sign"), tokens.audiences()).is_err(), "expired");
        let elsewhere = Tokens::load(&keys(tempfile::tempdir().expect("dir").path())).expect("load");
        let forged = elsewhere.sign(&claims).expect("sign");
        assert!(tokens.authenticate(&forged, tokens.audiences()).is_err(), "another key");
    }
}
