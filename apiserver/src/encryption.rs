//! Secrets at rest: `--encryption-provider-config`, upstream's `EncryptionConfiguration`.
//!
//! Each rule names resources (`secrets`, `configmaps`, `deployments.apps`, `*.apps`, `*.`,
//! `*.*`) and a list of providers. The first provider writes; every provider reads what it
//! wrote. Stored values carry upstream's prefix, `k8s:enc:<provider>:v1:<key name>:`, and
//! upstream's layouts, so a store written by one reads in the other:
//!
//! - `aescbc`: a random 16-byte IV, then AES-CBC with PKCS#7 padding;
//! - `aesgcm`: a random 12-byte nonce, then AES-GCM with the storage key as associated
//!   data (a value copied under another key does not decrypt);
//! - `secretbox`: a random 24-byte nonce, then NaCl's secretbox (tag first);
//! - `identity`: the value as it is. It reads anything without the `k8s:enc:` prefix, so
//!   listing it last lets a server read what was stored before encryption was turned on.
//!
//! A value read with any provider or key but the first is *stale*: the next update
//! rewrites it even when the object did not change, so `kubectl get secrets -A -o json |
//! kubectl replace -f -` re-encrypts everything with the new key, as upstream documents.

use std::collections::HashSet;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use base64::Engine;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use parking_lot::Mutex;
use serde::Deserialize;

/// The prefix of every encrypted value.
const ENCRYPTED: &[u8] = b"k8s:enc:";

/// A parsed `EncryptionConfiguration`: which resources are encrypted, and how.
pub struct Encryption {
    rules: Vec<Rule>,
    /// Keys last read with a provider or key other than the one that writes.
    stale: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        let rules: Vec<_> = self
            .rules
            .iter()
            .map(|r| (r.resources.clone(), r.providers.iter().map(Provider::name).collect::<Vec<_>>()))
            .collect();
        f.debug_struct("Encryption").field("rules", &rules).finish()
    }
}

struct Rule {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

enum Provider {
    Identity,
    AesCbc(Vec<Key>),
    AesGcm(Vec<Key>),
    Secretbox(Vec<Key>),
}

struct Key {
    name: String,
    secret: Vec<u8>,
}

/// Why a stored value could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CryptError(String);

// The file's shape, field names as upstream's (apiserver.config.k8s.io/v1).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<FileProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    identity: Option<serde_json::Value>,
    aescbc: Option<FileKeys>,
    aesgcm: Option<FileKeys>,
    secretbox: Option<FileKeys>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    #[serde(default)]
    keys: Vec<FileKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

impl Encryption {
    /// Reads and checks the file `--encryption-provider-config` names.
    pub fn load(path: &Path) -> Result<Encryption, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Encryption::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks an `EncryptionConfiguration` (YAML or JSON).
    pub fn parse(text: &str) -> Result<Encryption, String> {
        let file: File = serde_saphyr::from_str(text).map_err(|e| format!("not an EncryptionConfiguration: {e}"))?;
        match (file.api_version.as_deref(), file.kind.as_deref()) {
            (Some("apiserver.config.k8s.io/v1"), Some("EncryptionConfiguration")) => {}
            (api_version, kind) => {
                return Err(format!(
                    "expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration, found {} {}",
                    api_version.unwrap_or("(none)"),
                    kind.unwrap_or("(none)")
                ));
            }
        }
        if file.resources.is_empty() {
            return Err("resources: Required value: at least one resource must be specified".into());
        }
        let mut rules = Vec::new();
        let mut seen = HashSet::new();
        for (i, rule) in file.resources.into_iter().enumerate() {
            let at = format!("resources[{i}]");
            if rule.resources.is_empty() {
                return Err(format!("{at}.resources: Required value: at least one resource must be specified"));
            }
            for (j, r) in rule.resources.iter().enumerate() {
                check_resource(r).map_err(|e| format!("{at}.resources[{j}]: Invalid value: {r:?}: {e}"))?;
                if !seen.insert(r.clone()) {
                    return Err(format!("{at}.resources[{j}]: Duplicate value: {r:?}"));
                }
            }
            if rule.providers.is_empty() {
                return Err(format!("{at}.providers: Required value: at least one provider must be specified"));
            }
            let providers = rule
                .providers
                .into_iter()
                .enumerate()
                .map(|(j, p)| Provider::from_file(p, &format!("{at}.providers[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { resources: rule.resources, providers });
        }
        Ok(Encryption { rules, stale: Mutex::new(HashSet::new()) })
    }

    /// The providers for the resource stored under `key`, if a rule names it.
    fn providers(&self, key: &str) -> Option<&[Provider]> {
        let resource = crate::store::resource_of(key);
        let (plural, group) = resource.split_once('.').unwrap_or((&resource, ""));
        self.rules.iter().find(|r| r.resources.iter().any(|m| matches(m, plural, group))).map(|r| &r.providers[..])
    }

    /// The bytes to store for `value` under `key`.
    pub fn seal(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, CryptError> {
        let Some(first) = self.providers(key).and_then(<[Provider]>::first) else {
            return Ok(value.to_vec());
        };
        self.stale.lock().remove(key);
        first.seal(key, value)
    }

    /// The value stored as `stored` under `key`.
    pub fn open(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, CryptError> {
        let Some(providers) = self.providers(key) else {
            if stored.starts_with(ENCRYPTED) {
                return Err(CryptError(format!(
                    "{key} is encrypted and no rule of the encryption configuration covers its resource"
                )));
            }
            return Ok(stored.to_vec());
        };
        for (i, provider) in providers.iter().enumerate() {
            if let Some((plain, first_key)) = provider.open(key, stored)? {
                let mut stale = self.stale.lock();
                if i == 0 && first_key {
                    stale.remove(key);
                } else {
                    stale.insert(key.to_owned());
                }
                return Ok(plain);
            }
        }
        let found = if stored.starts_with(ENCRYPTED) {
            let end = stored.len().min(64);
            let prefix = String::from_utf8_lossy(&stored[..end]);
            let prefix = prefix.split(':').take(5).collect::<Vec<_>>().join(":");
            format!("it is encrypted as {prefix:?}")
        } else {
            "it is not encrypted and no identity provider is listed".to_owned()
        };
        Err(CryptError(format!("no provider of the encryption configuration reads {key}: {found}")))
    }

    /// Whether the value last read under `key` was written with an older provider or key,
    /// so an update should rewrite it even if the object is unchanged.
    pub fn is_stale(&self, key: &str) -> bool {
        self.stale.lock().contains(key)
    }
}

/// Whether a rule's resource `pattern` covers `plural` in `group` (core is "").
fn matches(pattern: &str, plural: &str, group: &str) -> bool {
    match pattern {
        "*.*" => true,
        "*." => group.is_empty(),
        _ => match pattern.strip_prefix("*.") {
            Some(g) => g == group,
            None => {
                let (p, g) = pattern.split_once('.').unwrap_or((pattern, ""));
                p == plural && g == group
            }
        },
    }
}

fn check_resource(r: &str) -> Result<(), &'static str> {
    if r.is_empty() {
        return Err("resource name must not be empty");
    }
    if r == "*" {
        return Err("use '*.' to match every resource of the core group, '*.*' for every resource");
    }
    if r.contains('*') && !r.starts_with("*.") {
        return Err("a wildcard must be the whole resource name: '*.<group>'");
    }
    if r != r.to_lowercase() {
        return Err("resource names are lowercase");
    }
    Ok(())
}

impl Provider {
    fn name(&self) -> &'static str {
        match self {
            Provider::Identity => "identity",
            Provider::AesCbc(_) => "aescbc",
            Provider::AesGcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
        }
    }

    fn from_file(p: FileProvider, at: &str) -> Result<Provider, String> {
        let set =
            [p.identity.is_some(), p.aescbc.is_some(), p.aesgcm.is_some(), p.secretbox.is_some(), p.kms.is_some()];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(format!(
                "{at}: Invalid value: exactly one provider must be set: identity, aescbc, aesgcm or secretbox"
            ));
        }
        if p.kms.is_some() {
            return Err(format!(
                "{at}.kms: Unsupported value: KMS plugins are not supported; use aescbc, aesgcm or secretbox"
            ));
        }
        let keys = |keys: FileKeys, name: &str, lengths: &[usize]| -> Result<Vec<Key>, String> {
            if keys.keys.is_empty() {
                return Err(format!("{at}.{name}.keys: Required value: at least one key must be specified"));
            }
            let mut names = HashSet::new();
            keys.keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    let at = format!("{at}.{name}.keys[{i}]");
                    if k.name.is_empty() {
                        return Err(format!("{at}.name: Required value: key name is required"));
                    }
                    if k.name.contains(':') {
                        return Err(format!("{at}.name: Invalid value: {:?}: should not contain ':'", k.name));
                    }
                    if !names.insert(k.name.clone()) {
                        return Err(format!("{at}.name: Duplicate value: {:?}", k.name));
                    }
                    let secret = base64::engine::general_purpose::STANDARD
                        .decode(k.secret.trim())
                        .map_err(|e| format!("{at}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded: {e}"))?;
                    if !lengths.contains(&secret.len()) {
                        return Err(format!(
                            "{at}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {lengths:?}",
                            secret.len()
                        ));
                    }
                    Ok(Key { name: k.name, secret })
                })
                .collect()
        };
        Ok(match p {
            FileProvider { aescbc: Some(k), .. } => Provider::AesCbc(keys(k, "aescbc", &[16, 24, 32])?),
            FileProvider { aesgcm: Some(k), .. } => Provider::AesGcm(keys(k, "aesgcm", &[16, 24, 32])?),
            FileProvider { secretbox: Some(k), .. } => Provider::Secretbox(keys(k, "secretbox", &[32])?),
            _ => Provider::Identity,
        })
    }

    fn keys(&self) -> &[Key] {
        match self {
            Provider::Identity => &[],
            Provider::AesCbc(k) | Provider::AesGcm(k) | Provider::Secretbox(k) => k,
        }
    }

    fn prefix(&self, key: &Key) -> Vec<u8> {
        format!("k8s:enc:{}:v1:{}:", self.name(), key.name).into_bytes()
    }

    /// Encrypts `value` with this provider's first key.
    fn seal(&self, storage_key: &str, value: &[u8]) -> Result<Vec<u8>, CryptError> {
        let Some(key) = self.keys().first() else { return Ok(value.to_vec()) };
        let mut out = self.prefix(key);
        let failed = |e: &dyn std::fmt::Display| CryptError(format!("encrypting {storage_key}: {e}"));
        match self {
            Provider::Identity => return Ok(value.to_vec()),
            Provider::AesCbc(_) => {
                let iv: [u8; 16] = random()?;
                out.extend_from_slice(&iv);
                let sealed = match key.secret.len() {
                    16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key.secret, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(value)),
                    24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&key.secret, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(value)),
                    _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&key.secret, &iv)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(value)),
                }
                .map_err(|e| failed(&e))?;
                out.extend_from_slice(&sealed);
            }
            Provider::AesGcm(_) => {
                let nonce: [u8; 12] = random()?;
                out.extend_from_slice(&nonce);
                let payload = Payload { msg: value, aad: storage_key.as_bytes() };
                let nonce = aes_gcm::Nonce::from_slice(&nonce);
                let sealed = match key.secret.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(&key.secret).map(|c| c.encrypt(nonce, payload)),
                    24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(&key.secret)
                        .map(|c| c.encrypt(nonce, payload)),
                    _ => aes_gcm::Aes256Gcm::new_from_slice(&key.secret).map(|c| c.encrypt(nonce, payload)),
                }
                .map_err(|e| failed(&e))?
                .map_err(|e| failed(&e))?;
                out.extend_from_slice(&sealed);
            }
            Provider::Secretbox(_) => {
                let nonce: [u8; 24] = random()?;
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&key.secret).map_err(|e| failed(&e))?;
                let mut body = value.to_vec();
                let tag = cipher
                    .encrypt_in_place_detached(crypto_secretbox::Nonce::from_slice(&nonce), b"", &mut body)
                    .map_err(|e| failed(&e))?;
                // NaCl's layout: nonce, tag, ciphertext.
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&tag);
                out.extend_from_slice(&body);
            }
        }
        Ok(out)
    }

    /// Decrypts `stored` if this provider wrote it: the value, and whether the key used
    /// was this provider's first. `None` if the prefix is not this provider's.
    fn open(&self, storage_key: &str, stored: &[u8]) -> Result<Option<(Vec<u8>, bool)>, CryptError> {
        if let Provider::Identity = self {
            return Ok((!stored.starts_with(ENCRYPTED)).then(|| (stored.to_vec(), true)));
        }
        let Some((index, key)) = self.keys().iter().enumerate().find(|(_, k)| stored.starts_with(&self.prefix(k)))
        else {
            return Ok(None);
        };
        let data = &stored[self.prefix(key).len()..];
        let failed = |what: &str| {
            CryptError(format!("decrypting {storage_key} with {} key {:?}: {what}", self.name(), key.name))
        };
        let plain = match self {
            Provider::Identity => return Ok(None),
            Provider::AesCbc(_) => {
                if data.len() < 32 || !data.len().is_multiple_of(16) {
                    return Err(failed("the data is not a whole number of blocks"));
                }
                let (iv, body) = data.split_at(16);
                match key.secret.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key.secret, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                    24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key.secret, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key.secret, iv)
                        .map(|c| c.decrypt_padded_vec_mut::<Pkcs7>(body)),
                }
                .map_err(|_| failed("bad key length"))?
                .map_err(|_| failed("invalid padding (wrong key, or the data was altered)"))?
            }
            Provider::AesGcm(_) => {
                if data.len() < 12 + 16 {
                    return Err(failed("the data is too short"));
                }
                let (nonce, body) = data.split_at(12);
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                let payload = Payload { msg: body, aad: storage_key.as_bytes() };
                match key.secret.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(&key.secret).map(|c| c.decrypt(nonce, payload)),
                    24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(&key.secret)
                        .map(|c| c.decrypt(nonce, payload)),
                    _ => aes_gcm::Aes256Gcm::new_from_slice(&key.secret).map(|c| c.decrypt(nonce, payload)),
                }
                .map_err(|_| failed("bad key length"))?
                .map_err(|_| {
                    failed("authentication failed (wrong key, altered data, or a value moved from another key)")
                })?
            }
            Provider::Secretbox(_) => {
                if data.len() < 24 + 16 {
                    return Err(failed("the data is too short"));
                }
                let (nonce, rest) = data.split_at(24);
                let (tag, body) = rest.split_at(16);
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&key.secret)
                    .map_err(|_| failed("bad key length"))?;
                let mut plain = body.to_vec();
                cipher
                    .decrypt_in_place_detached(
                        crypto_secretbox::Nonce::from_slice(nonce),
                        b"",
                        &mut plain,
                        crypto_secretbox::Tag::from_slice(tag),
                    )
                    .map_err(|_| failed("authentication failed (wrong key, or the data was altered)"))?;
                plain
            }
        };
        Ok(Some((plain, index == 0)))
    }
}

/// Random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], CryptError> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptError("the system's random source failed".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(providers: &str) -> Encryption {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, '*.apps']\n  providers:\n{providers}"
        );
        Encryption::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    const K16: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng=="; // 16 bytes
    const K24: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0"; // 24 bytes
    const K32: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="; // 32 bytes
    const K32B: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="; // another 32

    fn keys(provider: &str, secrets: &[&str]) -> String {
        let mut out = format!("  - {provider}:\n      keys:\n");
        for (i, s) in secrets.iter().enumerate() {
            out += &format!("      - name: key{}\n        secret: {s}\n", i + 1);
        }
        out
    }

    const SECRET: &str = "/registry/secrets/default/db";
    const PLAIN: &[u8] = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#;

    #[test]
    fn every_provider_and_key_length_round_trips_and_hides_the_value() {
        for (provider, secret) in [
            ("aescbc", K16),
            ("aescbc", K24),
            ("aescbc", K32),
            ("aesgcm", K16),
            ("aesgcm", K24),
            ("aesgcm", K32),
            ("secretbox", K32),
        ] {
            let enc = config(&keys(provider, &[secret]));
            let sealed = enc.seal(SECRET, PLAIN).expect("seal");
            let prefix = format!("k8s:enc:{provider}:v1:key1:");
            assert!(sealed.starts_with(prefix.as_bytes()), "{provider}");
            assert!(!sealed.windows(8).any(|w| w == b"aHVudGVy"), "{provider} leaks the value");
            assert_eq!(enc.open(SECRET, &sealed).expect("open"), PLAIN, "{provider}");
            assert!(!enc.is_stale(SECRET));
            // Two writes of the same value differ: a fresh IV or nonce each time.
            assert_ne!(enc.seal(SECRET, PLAIN).expect("seal"), sealed, "{provider}");
        }
    }

    #[test]
    fn altered_or_moved_values_are_refused() {
        for provider in ["aescbc", "aesgcm", "secretbox"] {
            let enc = config(&keys(provider, &[K32]));
            let mut sealed = enc.seal(SECRET, PLAIN).expect("seal");
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            let err = enc.open(SECRET, &sealed).expect_err(provider).to_string();
            assert!(err.contains("decrypting /registry/secrets/default/db"), "{err}");
        }
        // GCM binds the value to its key: a ciphertext copied under another name fails.
        let enc = config(&keys("aesgcm", &[K32]));
        let sealed = enc.seal(SECRET, PLAIN).expect("seal");
        let err = enc.open("/registry/secrets/default/other", &sealed).expect_err("moved").to_string();
        assert!(err.contains("a value moved from another key"), "{err}");
        // Another secret key cannot read it.
        let other = config(&keys("aesgcm", &[K32B]));
        assert!(other.open(SECRET, &sealed).is_err());
    }

    #[test]
    fn rotation_reads_old_keys_and_marks_them_stale() {
        let old = config(&keys("aescbc", &[K32]));
        let sealed_old = old.seal(SECRET, PLAIN).expect("seal");
        // The new key first, the old one second: both read, the old one is stale.
        let rotated = config(&(keys("aescbc", &[K32B, K32]).replace("key1", "new").replace("key2", "key1")));
        assert_eq!(rotated.open(SECRET, &sealed_old).expect("open"), PLAIN);
        assert!(rotated.is_stale(SECRET));
        let resealed = rotated.seal(SECRET, PLAIN).expect("seal");
        assert!(resealed.starts_with(b"k8s:enc:aescbc:v1:new:"));
        assert!(!rotated.is_stale(SECRET));
        // Plaintext from before encryption reads while identity is listed, and is stale.
        let with_identity = config(&(keys("secretbox", &[K32]) + "  - identity: {}\n"));
        assert_eq!(with_identity.open(SECRET, PLAIN).expect("open"), PLAIN);
        assert!(with_identity.is_stale(SECRET));
        // Without identity, plaintext is an error that says so.
        let err = rotated.open(SECRET, PLAIN).expect_err("plain").to_string();
        assert!(err.contains("not encrypted and no identity provider"), "{err}");
        // Identity alone cannot read encrypted data, and says how it was encrypted.
        let identity = config("  - identity: {}\n");
        let err = identity.open(SECRET, &resealed).expect_err("encrypted").to_string();
        assert!(err.contains("k8s:enc:aescbc:v1:new"), "{err}");
    }

    #[test]
    fn only_the_named_resources_are_encrypted() {
        let enc = config(&keys("aesgcm", &[K32]));
        let cm = "/registry/configmaps/default/settings";
        assert_eq!(enc.seal(cm, PLAIN).expect("seal"), PLAIN);
        assert!(enc.seal("/registry/deployments/default/web", PLAIN).expect("seal").starts_with(ENCRYPTED));
        assert!(matches("*.*", "pods", ""));
        assert!(matches("*.", "pods", ""));
        assert!(!matches("*.", "deployments", "apps"));
        assert!(matches("widgets.example.com", "widgets", "example.com"));
        assert!(!matches("secrets", "widgets", "example.com"));
        // An encrypted value under a resource no rule covers is an error, not garbage.
        let sealed = enc.seal(SECRET, PLAIN).expect("seal");
        let none = Encryption::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n  providers: [{identity: {}}]\n",
        )
        .expect("parse");
        assert!(none.open(SECRET, &sealed).is_err());
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let bad = |text: &str| Encryption::parse(text).expect_err(text);
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
        assert!(bad("apiVersion: v1\nkind: ConfigMap\n").contains("expected apiVersion"));
        assert!(bad(&format!("{head}resources: []\n")).contains("at least one resource"));
        let short =
            format!("{head}resources:\n- resources: [secrets]\n  providers:\n{}", keys("aescbc", &["c2hvcnQ="]));
        let err = bad(&short);
        assert!(err.contains("resources[0].providers[0].aescbc.keys[0].secret") && err.contains("got 5"), "{err}");
        assert!(!err.contains("c2hvcnQ"), "the secret leaks into the message: {err}");
        let box16 = format!("{head}resources:\n- resources: [secrets]\n  providers:\n{}", keys("secretbox", &[K16]));
        assert!(bad(&box16).contains("expected one of [32]"));
        let not_b64 =
            format!("{head}resources:\n- resources: [secrets]\n  providers:\n{}", keys("aesgcm", &["not-base64@"]));
        assert!(bad(&not_b64).contains("base64"));
        let kms = format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - kms: {{name: x}}\n");
        assert!(bad(&kms).contains("KMS"));
        let typo = format!("{head}resources:\n- resources: [secrets]\n  provider: []\n");
        assert!(bad(&typo).contains("provider"));
        let star = format!("{head}resources:\n- resources: ['*']\n  providers: [{{identity: {{}}}}]\n");
        assert!(bad(&star).contains("'*.'"));
        let twice = format!(
            "{head}resources:\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n    aescbc: {{keys: [{{name: a, secret: {K32}}}]}}\n"
        );
        assert!(bad(&twice).contains("exactly one provider"));
    }
}
