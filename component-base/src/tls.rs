//! TLS for the cluster's listeners, with rustls (ring): reading PEM files, a server
//! configuration that asks clients for a certificate, checking a presented chain against
//! the client CA, and the user a certificate names (CN the user, O the groups), as
//! upstream's x509 authenticator reads it.
//!
//! The handshake proves that a client holds the key of the certificate it presents but
//! does not judge the certificate: that is authentication's part, so an expired or
//! wrongly-signed certificate gets upstream's 401 with the reason in the server's log,
//! rather than a failed handshake the client cannot explain.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider every TLS endpoint of the cluster uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in a PEM file, in order (a leaf first, then its intermediates).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading a private key from {}", path.display()))
}

/// Who a valid client certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject's common name.
    pub user: String,
    /// The subject's organizations.
    pub groups: Vec<String>,
    /// When the certificate stops being valid.
    pub not_after: SystemTime,
}

/// What a connection's client certificate says, judged once per connection.
#[derive(Debug, Clone, Default)]
pub enum PeerCert {
    /// No certificate was presented (or the connection is not TLS).
    #[default]
    None,
    /// A certificate the client CA signed, valid when the connection opened.
    Valid(CertIdentity),
    /// A certificate that is not acceptable, and why (for the log, never the client).
    Invalid(String),
}

impl PeerCert {
    /// The identity, if the certificate is still valid at `now`; an error with the reason
    /// for a certificate that is not (expired since the connection opened included).
    pub fn identity_at(&self, now: SystemTime) -> Result<Option<&CertIdentity>, String> {
        match self {
            PeerCert::None => Ok(None),
            PeerCert::Invalid(why) => Err(why.clone()),
            PeerCert::Valid(id) if now > id.not_after => Err(format!(
                "x509: certificate has expired or is not yet valid: current time {} is after {}",
                rfc3339(now),
                rfc3339(id.not_after)
            )),
            PeerCert::Valid(id) => Ok(Some(id)),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_else(|_| format!("{t:?}"))
}

/// The CA client certificates must chain to (`--client-ca-file`).
#[derive(Clone)]
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
    subjects: Vec<DistinguishedName>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa").field("subjects", &self.subjects.len()).finish()
    }
}

impl ClientCa {
    /// The CA certificates in a PEM file.
    pub fn from_file(path: &Path) -> Result<ClientCa> {
        ClientCa::from_certs(read_certs(path)?).with_context(|| format!("the client CA in {}", path.display()))
    }

    /// A CA of these certificates.
    pub fn from_certs(certs: Vec<CertificateDer<'static>>) -> Result<ClientCa> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).context("a CA certificate that cannot be a trust anchor")?;
        }
        let subjects = roots.subjects();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .context("building the client certificate verifier")?;
        Ok(ClientCa { verifier, subjects })
    }

    /// Judges a presented chain (leaf first) at `now`: the identity it names, or why it is
    /// refused, in the words of Go's x509 errors where upstream logs those.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: SystemTime) -> Result<CertIdentity, String> {
        let Some((leaf, intermediates)) = chain.split_first() else { return Err("no certificate".into()) };
        let unix = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO));
        if let Err(e) = self.verifier.verify_client_cert(leaf, intermediates, unix) {
            return Err(match e {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
                | rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
                | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
                | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYetContext { .. }) => {
                    format!("x509: certificate has expired or is not yet valid: {e}")
                }
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
                    format!("x509: certificate signed by unknown authority: {e}")
                }
                other => format!("x509: {other}"),
            });
        }
        identity(leaf)
    }

    /// A server configuration that asks for a client certificate of this CA (without
    /// requiring one) and proves the client holds its key.
    fn asking_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(AskForCertificate {
            hints: self.subjects.clone(),
            algorithms: provider().signature_verification_algorithms,
        })
    }
}

/// The user a certificate names: CN the user, each O a group.
pub fn identity(cert: &CertificateDer<'_>) -> Result<CertIdentity, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("x509: malformed certificate: {e}"))?;
    let subject = parsed.subject();
    let user = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned();
    if user.is_empty() {
        return Err("x509: the certificate's subject has no common name".into());
    }
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_owned)).collect();
    let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
    Ok(CertIdentity { user, groups, not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after) })
}

/// Asks for a certificate, proves possession of its key, and leaves the rest to
/// [`ClientCa::verify`].
#[derive(Debug)]
struct AskForCertificate {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The serving certificate of the moment, replaced when it is renewed.
#[derive(Debug, Default)]
pub struct CertSlot(parking_lot::RwLock<Option<Arc<rustls::sign::CertifiedKey>>>);

impl CertSlot {
    /// Holds `cert_pem` (a chain) and its key from now on.
    pub fn set_pem(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing the key")?;
        let signer = provider().key_provider.load_private_key(key).context("loading the key")?;
        let certified = rustls::sign::CertifiedKey::new(chain, signer);
        certified.keys_match().context("the certificate is not for this key")?;
        *self.0.write() = Some(Arc::new(certified));
        Ok(())
    }

    /// Whether it holds a certificate.
    pub fn is_set(&self) -> bool {
        self.0.read().is_some()
    }
}

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().clone()
    }
}

/// A server configuration, short of its certificate, that asks for client certificates
/// when there is a client CA.
fn server_builder(
    client_ca: Option<&ClientCa>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    Ok(match client_ca {
        Some(ca) => builder.with_client_cert_verifier(ca.asking_verifier()),
        None => builder.with_no_client_auth(),
    })
}

/// A serving identity and who may present client certificates.
#[derive(Clone, Debug)]
pub struct Serving {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// The client CA, when client certificates are accepted.
    pub client_ca: Option<ClientCa>,
}

impl Serving {
    /// From `--tls-cert-file`, `--tls-private-key-file` and `--client-ca-file`.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Serving> {
        let client_ca = client_ca.map(ClientCa::from_file).transpose()?;
        Serving::new(read_certs(cert)?, read_key(key)?, client_ca)
            .with_context(|| format!("serving with {} and {}", cert.display(), key.display()))
    }

    /// From a chain, its key and a client CA.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_ca: Option<ClientCa>,
    ) -> Result<Serving> {
        let mut config = server_builder(client_ca.as_ref())?
            .with_single_cert(chain, key)
            .context("the serving certificate and key do not match")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Serving { config: Arc::new(config), client_ca })
    }

    /// Serving whatever certificate `slot` holds when a client connects: a kubelet whose
    /// serving certificate comes from a CertificateSigningRequest, renewed while it runs.
    /// Until the slot holds one, handshakes fail.
    pub fn rotating(slot: Arc<CertSlot>, client_ca: Option<ClientCa>) -> Result<Serving> {
        let mut config = server_builder(client_ca.as_ref())?.with_cert_resolver(slot);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Serving { config: Arc::new(config), client_ca })
    }

    /// The handshake on an accepted connection, and what its client certificate says.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<(tokio_rustls::server::TlsStream<IO>, PeerCert)>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let stream = tokio_rustls::TlsAcceptor::from(self.config.clone()).accept(io).await?;
        let peer = match (&self.client_ca, stream.get_ref().1.peer_certificates()) {
            (Some(ca), Some(chain)) if !chain.is_empty() => match ca.verify(chain, SystemTime::now()) {
                Ok(id) => PeerCert::Valid(id),
                Err(why) => PeerCert::Invalid(why),
            },
            _ => PeerCert::None,
        };
        Ok((stream, peer))
    }
}

/// A rustls client configuration trusting only `ca`, presenting `identity` (a chain and
/// its key) when given.
pub fn client_config(
    ca: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).context("a CA certificate that cannot be a trust anchor")?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    Ok(match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).context("the client certificate and key")?,
        None => builder.with_no_client_auth(),
    })
}
