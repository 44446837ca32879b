//! The cluster's certificates, made with rcgen: a CA, certificates it signs for servers
//! and clients (CN the user, O the groups, as upstream's x509 authenticator reads them),
//! and kubeconfigs that carry them.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long the CA is valid: ten years, as kubeadm's.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the certificates it signs are valid: one year, as kubeadm's.
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back a new certificate's validity starts, so that a host whose clock is a
/// little behind accepts it at once.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate authority: its certificate and the key that signs with it.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    key: KeyPair,
    issuer: Issuer<'static, KeyPair>,
}

/// What a certificate to issue says.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The subject's common name (the user, for a client certificate).
    pub common_name: String,
    /// The subject's organizations (the groups).
    pub organizations: Vec<String>,
    /// DNS names it serves.
    pub dns_names: Vec<String>,
    /// Addresses it serves.
    pub ips: Vec<IpAddr>,
    /// Whether it may serve TLS.
    pub server: bool,
    /// Whether it may authenticate a client.
    pub client: bool,
    /// How long it is valid.
    pub validity: Duration,
}

impl Request {
    /// A client certificate for `user` in `groups`, valid for [`CERT_VALIDITY`].
    pub fn client(user: &str, groups: &[&str]) -> Request {
        Request {
            common_name: user.to_owned(),
            organizations: groups.iter().map(|g| (*g).to_owned()).collect(),
            client: true,
            validity: CERT_VALIDITY,
            ..Default::default()
        }
    }

    /// A serving certificate for `common_name` at these names and addresses.
    pub fn server(common_name: &str, dns_names: &[String], ips: &[IpAddr]) -> Request {
        Request {
            common_name: common_name.to_owned(),
            dns_names: dns_names.to_vec(),
            ips: ips.to_vec(),
            server: true,
            validity: CERT_VALIDITY,
            ..Default::default()
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // A short-lived certificate is backdated less, so that most of its life is ahead of it
    // and a renewal at 70-90% of it comes after it was issued.
    params.not_before = now - BACKDATE.min(validity / 4);
    params.not_after = now + validity;
}

impl Ca {
    /// A new CA named `common_name`.
    pub fn generate(common_name: &str, lifetime: Duration) -> Result<Ca> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, lifetime);
        let cert = params.self_signed(&key).context("signing the CA certificate")?;
        Ca::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// A CA from its certificate and key, PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        let signing = KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, signing).context("parsing the CA certificate")?;
        Ok(Ca { cert_pem: cert_pem.to_owned(), key, issuer })
    }

    /// A CA from `ca.crt` and `ca.key` in `dir`.
    pub fn load(dir: &Path) -> Result<Ca> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        Ca::from_pem(&read("ca.crt")?, &read("ca.key")?)
    }

    /// The CA's key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A new key and a certificate for it, signed by this CA.
    pub fn issue(&self, request: &Request) -> Result<Issued> {
        let key = KeyPair::generate().context("generating a key")?;
        let cert_pem = self.sign(request, &key)?;
        Ok(Issued { cert_pem, key_pem: key.serialize_pem() })
    }

    /// A certificate for `public_key` (a key in a CSR, say) as `request` describes.
    pub fn sign(&self, request: &Request, public_key: &impl rcgen::PublicKeyData) -> Result<String> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(request)?;
        params.subject_alt_names = alt_names(request)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if request.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if request.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, request.validity);
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        let cert = params.signed_by(public_key, &self.issuer).context("signing a certificate")?;
        Ok(cert.pem())
    }
}

/// A new key and a PKCS#10 certificate signing request for the subject and names of
/// `request`: the request's PEM and the key's (PKCS#8).
pub fn csr(request: &Request) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(request)?;
    params.subject_alt_names = alt_names(request)?;
    let csr = params.serialize_request(&key).context("signing the certificate request")?;
    Ok((csr.pem().context("encoding the certificate request")?, key.serialize_pem()))
}

/// What a PEM certificate signing request asks for: its subject (CN, O) and names, in a
/// [`Request`] with no usages and no validity yet, and the public key to certify. The
/// request's signature is checked (the requester holds the key).
pub fn read_csr(pem: &str) -> Result<(Request, rcgen::CertificateSigningRequestParams)> {
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension};
    let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .context("no CERTIFICATE REQUEST block")?;
    let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
        .context("parsing the certificate request")?;
    parsed.verify_signature().map_err(|e| anyhow::anyhow!("the request's signature does not verify: {e}"))?;
    let subject = &parsed.certification_request_info.subject;
    let mut request = Request {
        common_name: subject.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_owned(),
        organizations: subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_owned).collect(),
        ..Default::default()
    };
    for ext in parsed.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => request.dns_names.push((*d).to_owned()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => request.ips.push(IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())),
                        16 => request.ips.push(IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())),
                        _ => anyhow::bail!("a subject alternative name is not an IP address"),
                    },
                    other => anyhow::bail!("subject alternative names of this kind are not signed: {other}"),
                }
            }
        }
    }
    let params = rcgen::CertificateSigningRequestParams::from_der(&der).context("reading the request's key")?;
    Ok((request, params))
}

/// The request's DNS names and addresses as subject alternative names.
fn alt_names(request: &Request) -> Result<Vec<SanType>> {
    let mut names = Vec::new();
    for name in &request.dns_names {
        names.push(SanType::DnsName(name.clone().try_into().with_context(|| format!("DNS name {name:?}"))?));
    }
    names.extend(request.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(names)
}

fn subject(request: &Request) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, request.common_name.as_str());
    // rcgen keeps one value per attribute type; the second organization goes in under
    // the same OID (2.5.4.10) spelled as a custom type, so it is still an O.
    match request.organizations.as_slice() {
        [] => {}
        [one] => dn.push(DnType::OrganizationName, one.as_str()),
        [one, two] => {
            dn.push(DnType::OrganizationName, one.as_str());
            dn.push(DnType::CustomDnType(vec![2, 5, 4, 10]), two.as_str());
        }
        more => anyhow::bail!("a certificate carries at most two groups (O), not {}: {more:?}", more.len()),
    }
    Ok(dn)
}

/// A self-signed serving certificate for `names` and `ips` (what a component serves
/// when it is given none): the certificate's PEM and the key's.
pub fn self_signed(common_name: &str, names: &[String], ips: &[IpAddr]) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating a key")?;
    let request = Request::server(common_name, names, ips);
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(&request)?;
    params.subject_alt_names = alt_names(&request)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, CERT_VALIDITY);
    let cert = params.self_signed(&key).context("signing the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new service account signing key: the private key (PKCS#8 PEM) and its public key
/// (SPKI PEM), EC P-256 for ES256 tokens.
pub fn signing_key() -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating the service account key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// A kubeconfig for `user` reaching `server`, trusting `ca_pem`, with a client
/// certificate or a bearer token.
pub fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, user: &str, credential: &Credential) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auth = match credential {
        Credential::Certificate(issued) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&issued.cert_pem),
            b64(&issued.key_pem)
        ),
        Credential::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    certificate-authority-data: {ca}
    server: {server}
users:
- name: {user}
  user:
{auth}contexts:
- name: {user}@{cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {user}@{cluster}
",
        ca = b64(ca_pem),
    )
}

/// How a kubeconfig's user proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client certificate and its key.
    Certificate(Issued),
    /// A bearer token.
    Token(String),
}

/// When a PEM certificate starts and stops being valid.
pub fn validity_window(cert_pem: &str) -> Result<(jiff::Timestamp, jiff::Timestamp)> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("parsing PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("parsing the certificate")?;
    let from = jiff::Timestamp::from_second(cert.validity().not_before.timestamp()).context("the start")?;
    let to = jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).context("the expiry")?;
    Ok((from, to))
}

/// When a PEM certificate stops being valid, and its subject's common name.
pub fn expiry(cert_pem: &str) -> Result<(String, jiff::Timestamp)> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("parsing PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("parsing the certificate")?;
    let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_owned();
    let at = jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).context("the expiry")?;
    Ok((cn, at))
}

use rustls::pki_types::pem::PemObject;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{ClientCa, read_certs};

    #[test]
    fn a_client_certificate_names_its_user_and_groups_and_chains_to_the_ca() {
        let ca = Ca::generate("test-ca", CA_VALIDITY).expect("ca");
        let issued = ca.issue(&Request::client("alice", &["devs", "ops"])).expect("issue");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).expect("write");
        std::fs::write(dir.path().join("alice.crt"), &issued.cert_pem).expect("write");
        let client_ca = ClientCa::from_file(&dir.path().join("ca.crt")).expect("client ca");
        let chain = read_certs(&dir.path().join("alice.crt")).expect("chain");
        let id = client_ca.verify(&chain, std::time::SystemTime::now()).expect("valid");
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, vec!["devs".to_owned(), "ops".to_owned()]);
        let later = std::time::SystemTime::now() + CERT_VALIDITY + Duration::from_secs(3600);
        let expired = client_ca.verify(&chain, later).expect_err("expired");
        assert!(expired.contains("expired or is not yet valid"), "{expired}");
        let other = Ca::generate("other", CA_VALIDITY).expect("other ca");
        let forged = other.issue(&Request::client("alice", &["system:masters"])).expect("issue");
        std::fs::write(dir.path().join("forged.crt"), &forged.cert_pem).expect("write");
        let forged = read_certs(&dir.path().join("forged.crt")).expect("chain");
        let refused = client_ca.verify(&forged, std::time::SystemTime::now()).expect_err("unknown authority");
        assert!(refused.contains("unknown authority"), "{refused}");
    }

    #[test]
    fn a_saved_ca_signs_again_after_loading() {
        let ca = Ca::generate("test-ca", CA_VALIDITY).expect("ca");
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem()).expect("load");
        let issued = again.issue(&Request::server("apiserver", &["localhost".into()], &[[127, 0, 0, 1].into()]));
        let (cn, at) = expiry(&issued.expect("issue").cert_pem).expect("expiry");
        assert_eq!(cn, "apiserver");
        assert!(at > jiff::Timestamp::now());
    }

    #[test]
    fn a_csr_is_read_back_and_signed_for_its_own_key() {
        let ca = Ca::generate("test-ca", CA_VALIDITY).expect("ca");
        let asked = Request {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec!["n1".into()],
            ips: vec![[10, 0, 0, 1].into()],
            ..Default::default()
        };
        let (csr_pem, key_pem) = csr(&asked).expect("csr");
        let (read, params) = read_csr(&csr_pem).expect("read");
        assert_eq!(read.common_name, "system:node:n1");
        assert_eq!(read.organizations, vec!["system:nodes".to_owned()]);
        assert_eq!(read.dns_names, vec!["n1".to_owned()]);
        assert_eq!(read.ips, asked.ips);
        let cert = ca.sign(&Request { client: true, validity: Duration::from_secs(60), ..read }, &params.public_key);
        let cert = cert.expect("sign");
        // The certificate is for the requester's key: it pairs with the key the CSR came with.
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
        let signer = crate::tls::provider().key_provider.load_private_key(key).expect("load");
        let certified = rustls::sign::CertifiedKey::new(chain, signer);
        assert!(certified.keys_match().is_ok());
        assert!(read_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").is_err());
    }
}
