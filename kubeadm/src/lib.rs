//! kubeadm's phases: the cluster's PKI and the kubeconfigs of its components, written to
//! disk the way upstream's `kubeadm init phase certs|kubeconfig` lays them out. Files that
//! exist are used as they are: nothing is rotated without being asked.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use component_base::pki::{self, Ca, Credential, Request};

pub mod token;

/// The control plane's certificates.
#[derive(Debug, Clone)]
pub struct CertsOptions {
    /// Where the certificates go (`/etc/kubernetes/pki`).
    pub cert_dir: PathBuf,
    /// The address the apiserver is reached at on the network.
    pub advertise_address: Option<IpAddr>,
    /// More names and addresses for the apiserver's certificate.
    pub extra_sans: Vec<String>,
    /// The Service range: its first address is `kubernetes.default`'s cluster IP.
    pub service_cidr: (Ipv4Addr, u8),
}

/// What a phase did to each file, for the user to read.
pub type Report = Vec<String>;

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn write_public(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The CA in `dir`, made first if there is none.
pub fn ensure_ca(dir: &Path, report: &mut Report) -> Result<Ca> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (crt.exists(), key.exists()) {
        (true, true) => {
            report.push(format!("[certs] Using the existing \"ca\" certificate and key in {}", dir.display()));
            Ca::load(dir)
        }
        (false, false) => {
            let ca = Ca::generate("kubernetes", pki::CA_VALIDITY)?;
            write_public(&crt, &ca.cert_pem)?;
            write_private(&key, &ca.key_pem())?;
            report.push(format!("[certs] Generating \"ca\" certificate and key in {}", dir.display()));
            Ok(ca)
        }
        _ => bail!("{} has only one of ca.crt and ca.key; restore the other or remove both", dir.display()),
    }
}

/// `NAME.crt` and `NAME.key` in `dir`, issued if they are not there.
fn ensure_pair(ca: &Ca, dir: &Path, name: &str, request: &Request, report: &mut Report) -> Result<()> {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if crt.exists() && key.exists() {
        report.push(format!("[certs] Using the existing \"{name}\" certificate and key"));
        return Ok(());
    }
    let issued = ca.issue(request)?;
    write_public(&crt, &issued.cert_pem)?;
    write_private(&key, &issued.key_pem)?;
    let mut names: Vec<String> = request.dns_names.clone();
    names.extend(request.ips.iter().map(IpAddr::to_string));
    if names.is_empty() {
        report.push(format!("[certs] Generating \"{name}\" certificate and key ({})", request.common_name));
    } else {
        report.push(format!("[certs] Generating \"{name}\" certificate and key, serving {}", names.join(", ")));
    }
    Ok(())
}

/// The first address of a range: the cluster IP of `kubernetes.default`.
pub fn first_service_ip((net, _): (Ipv4Addr, u8)) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net).wrapping_add(1))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// `kubeadm init phase certs all`: the CA, the apiserver's serving certificate and its
/// client certificate for kubelets.
pub fn certs(options: &CertsOptions) -> Result<Report> {
    let mut report = Report::new();
    let dir = &options.cert_dir;
    let ca = ensure_ca(dir, &mut report)?;
    let mut dns: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    .map(str::to_owned)
    .to_vec();
    let host = hostname();
    if !host.is_empty() {
        dns.push(host);
    }
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), first_service_ip(options.service_cidr).into()];
    ips.extend(options.advertise_address);
    for san in &options.extra_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    dns.dedup();
    ips.dedup();
    ensure_pair(&ca, dir, "apiserver", &Request::server("kube-apiserver", &dns, &ips), &mut report)?;
    ensure_pair(
        &ca,
        dir,
        "apiserver-kubelet-client",
        &Request::client("kube-apiserver-kubelet-client", &["system:masters"]),
        &mut report,
    )?;
    let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
    if sa_key.exists() && sa_pub.exists() {
        report.push("[certs] Using the existing \"sa\" key".into());
    } else {
        let (private, public) = pki::signing_key()?;
        write_private(&sa_key, &private)?;
        write_public(&sa_pub, &public)?;
        report.push("[certs] Generating \"sa\" key and public key".into());
    }
    Ok(report)
}

/// Who each control-plane kubeconfig is for: upstream's user names.
pub const COMPONENTS: [(&str, &str, &[&str]); 5] = [
    ("admin.conf", "kubernetes-admin", &["system:masters"]),
    ("controller-manager.conf", "system:kube-controller-manager", &[]),
    ("scheduler.conf", "system:kube-scheduler", &[]),
    ("kube-proxy.conf", "system:kube-proxy", &[]),
    ("kube-dns.conf", "system:kube-dns", &[]),
];

/// `kubeadm init phase kubeconfig all`: a kubeconfig per control-plane identity, each
/// with its own client certificate.
pub fn kubeconfigs(cert_dir: &Path, kubeconfig_dir: &Path, server: &str) -> Result<Report> {
    let mut report = Report::new();
    let ca = Ca::load(cert_dir)?;
    for (file, user, groups) in COMPONENTS {
        let path = kubeconfig_dir.join(file);
        if path.exists() {
            report.push(format!("[kubeconfig] Using the existing \"{}\"", path.display()));
            continue;
        }
        write_private(&path, &user_kubeconfig(&ca, server, user, groups, pki::CERT_VALIDITY)?)?;
        report.push(format!("[kubeconfig] Writing \"{}\" ({user})", path.display()));
    }
    Ok(report)
}

/// A kubeconfig for `user` in `groups` with a new client certificate.
pub fn user_kubeconfig(
    ca: &Ca,
    server: &str,
    user: &str,
    groups: &[&str],
    validity: std::time::Duration,
) -> Result<String> {
    let mut request = Request::client(user, groups);
    request.validity = validity;
    let issued = ca.issue(&request)?;
    Ok(pki::kubeconfig("kubernetes", server, &ca.cert_pem, user, &Credential::Certificate(issued)))
}

/// A node's credentials: `kubelet-NAME.conf` (client `system:node:NAME` in
/// `system:nodes`) and its serving certificate `kubelet-NAME.crt` for these addresses.
pub fn node(cert_dir: &Path, kubeconfig_dir: &Path, server: &str, name: &str, addresses: &[String]) -> Result<Report> {
    let mut report = Report::new();
    let ca = Ca::load(cert_dir)?;
    let conf = kubeconfig_dir.join(format!("kubelet-{name}.conf"));
    if conf.exists() {
        report.push(format!("[kubeconfig] Using the existing \"{}\"", conf.display()));
    } else {
        let user = format!("system:node:{name}");
        write_private(&conf, &user_kubeconfig(&ca, server, &user, &["system:nodes"], pki::CERT_VALIDITY)?)?;
        report.push(format!("[kubeconfig] Writing \"{}\" ({user})", conf.display()));
    }
    let mut dns = vec![name.to_owned()];
    let mut ips = Vec::new();
    for a in addresses {
        match a.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(a.clone()),
        }
    }
    ensure_pair(&ca, cert_dir, &format!("kubelet-{name}"), &Request::server(name, &dns, &ips), &mut report)?;
    Ok(report)
}

/// `kubeadm certs check-expiration`: each certificate in `cert_dir` and kubeconfig in
/// `kubeconfig_dir`, with its subject and expiry.
pub fn check_expiration(cert_dir: &Path, kubeconfig_dir: &Path) -> Result<Vec<(String, String, jiff::Timestamp)>> {
    let mut rows = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cert_dir)
        .with_context(|| format!("reading {}", cert_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    paths.sort();
    for p in paths {
        let (cn, at) = pki::expiry(&std::fs::read_to_string(&p)?).with_context(|| p.display().to_string())?;
        rows.push((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), cn, at));
    }
    let mut confs: Vec<PathBuf> = std::fs::read_dir(kubeconfig_dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect())
        .unwrap_or_default();
    confs.sort();
    for p in confs {
        let text = std::fs::read_to_string(&p)?;
        let Some(data) = text.lines().find_map(|l| l.trim().strip_prefix("client-certificate-data:")) else { continue };
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD.decode(data.trim()).context("client-certificate-data")?;
        let (cn, at) = pki::expiry(&String::from_utf8_lossy(&pem)).with_context(|| p.display().to_string())?;
        rows.push((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), cn, at));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_are_made_once_and_kept_after() {
        let dir = tempfile::tempdir().expect("dir");
        let options = CertsOptions {
            cert_dir: dir.path().join("pki"),
            advertise_address: Some("192.168.1.10".parse().expect("ip")),
            extra_sans: vec!["api.example.test".into()],
            service_cidr: ("10.96.0.0".parse().expect("ip"), 12),
        };
        let first = certs(&options).expect("certs");
        assert!(first.iter().all(|l| l.contains("Generating")), "{first:?}");
        let ca_before = std::fs::read_to_string(dir.path().join("pki/ca.crt")).expect("ca");
        let second = certs(&options).expect("certs again");
        assert!(second.iter().all(|l| l.contains("Using the existing")), "{second:?}");
        assert_eq!(ca_before, std::fs::read_to_string(dir.path().join("pki/ca.crt")).expect("ca"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("pki/ca.key")).expect("key").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        kubeconfigs(&dir.path().join("pki"), dir.path(), "https://127.0.0.1:6443").expect("kubeconfigs");
        node(&dir.path().join("pki"), dir.path(), "https://127.0.0.1:6443", "n1", &["10.0.0.5".into()]).expect("node");
        let rows = check_expiration(&dir.path().join("pki"), dir.path()).expect("expiration");
        let subjects: Vec<&str> = rows.iter().map(|(_, cn, _)| cn.as_str()).collect();
        for want in ["kubernetes", "kube-apiserver", "kubernetes-admin", "system:node:n1", "n1"] {
            assert!(subjects.contains(&want), "{want} missing from {subjects:?}");
        }
    }

    #[test]
    fn the_first_service_address_is_the_apiservers() {
        assert_eq!(first_service_ip(("10.96.0.0".parse().expect("ip"), 12)), Ipv4Addr::new(10, 96, 0, 1));
    }
}
