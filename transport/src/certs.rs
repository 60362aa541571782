//! Cluster certificate authority and per-node certificates.
//!
//! [`generate_cluster`] makes a self-signed cluster CA and one certificate per node signed by it;
//! [`write_cluster`] puts them on disk; [`NodeIdentity`] is what a node loads back to run TLS.

use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::TransportError;

/// Common name of every cluster CA this crate generates.
pub const CA_COMMON_NAME: &str = "troupe cluster CA";

/// A cluster CA and the certificates it signed, all PEM encoded.
#[derive(Clone)]
pub struct ClusterCerts {
    /// The CA certificate (PEM); every node trusts exactly this.
    pub ca_cert_pem: String,
    /// The CA private key (PEM, PKCS#8); keep it off the nodes once they are provisioned.
    pub ca_key_pem: String,
    /// One certificate per node, in the order the names were given.
    pub nodes: Vec<NodeCert>,
}

/// One node's certificate and private key, PEM encoded.
#[derive(Clone)]
pub struct NodeCert {
    /// The node name; also the certificate's first DNS subject-alternative name.
    pub name: String,
    /// The node certificate (PEM), signed by the cluster CA.
    pub cert_pem: String,
    /// The node's private key (PEM, PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for ClusterCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCerts")
            .field("ca_key_pem", &"<redacted>")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("name", &self.name)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClusterCerts {
    /// The certificate of the node called `name`, if one was generated.
    pub fn node(&self, name: &str) -> Option<&NodeCert> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The in-memory [`NodeIdentity`] of the node called `name`.
    pub fn identity(&self, name: &str) -> Result<NodeIdentity, TransportError> {
        let node = self
            .node(name)
            .ok_or_else(|| TransportError::InvalidNodeName {
                name: name.to_owned(),
                reason: "not a node of this cluster",
            })?;
        NodeIdentity::from_pem(
            self.ca_cert_pem.as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
            name,
        )
    }
}

/// Checks that `name` can be a certificate DNS name, a TLS server name and a file stem.
pub fn validate_node_name(name: &str) -> Result<(), TransportError> {
    let bad = |reason| {
        Err(TransportError::InvalidNodeName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "ca" {
        return bad("\"ca\" is reserved for the cluster CA files");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return bad("only ASCII letters, digits, '-' and '.' are allowed");
    }
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        Ok(_) => bad("an IP address is not a node name"),
        Err(_) => bad("not a valid DNS name"),
    }
}

/// Makes a cluster CA (self-signed, CA=true) and one certificate per node signed by it.
///
/// Each node certificate names the node as its first DNS subject-alternative name, then
/// `localhost` and the IP address 127.0.0.1, and is valid for both TLS server and client use.
/// Names must be distinct and pass [`validate_node_name`]. Keys are ECDSA P-256.
pub fn generate_cluster(node_names: &[String]) -> Result<ClusterCerts, TransportError> {
    for (i, name) in node_names.iter().enumerate() {
        validate_node_name(name)?;
        if node_names[..i].contains(name) {
            return Err(TransportError::InvalidNodeName {
                name: name.clone(),
                reason: "duplicate",
            });
        }
    }

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let nodes = node_names
        .iter()
        .map(|name| {
            let mut params =
                CertificateParams::new(vec![name.clone(), "localhost".into(), "127.0.0.1".into()])?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok(NodeCert {
                name: name.clone(),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        })
        .collect::<Result<Vec<_>, TransportError>>()?;

    Ok(ClusterCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        nodes,
    })
}

/// Writes `ca.pem`, `ca.key`, `<name>.pem` and `<name>.key` into `dir` (created if missing).
///
/// Key files get mode 0600 on Unix; they are created with that mode, never widened afterwards.
pub fn write_cluster(dir: impl AsRef<Path>, certs: &ClusterCerts) -> Result<(), TransportError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| TransportError::io(dir, e))?;
    write_file(&dir.join("ca.pem"), &certs.ca_cert_pem, false)?;
    write_file(&dir.join("ca.key"), &certs.ca_key_pem, true)?;
    for node in &certs.nodes {
        validate_node_name(&node.name)?;
        write_file(
            &dir.join(format!("{}.pem", node.name)),
            &node.cert_pem,
            false,
        )?;
        write_file(&dir.join(format!("{}.key", node.name)), &node.key_pem, true)?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TransportError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its old mode on open; tighten it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| TransportError::io(path, e))?;
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .map_err(|e| TransportError::io(path, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| TransportError::io(path, e))
}

/// What a node needs to speak mutual TLS in its cluster: the CA it trusts, its certificate
/// chain and private key, and its name.
pub struct NodeIdentity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    name: String,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            name: self.name.clone(),
        }
    }
}

impl NodeIdentity {
    /// Loads a node identity from PEM files; every error names the file at fault.
    ///
    /// `ca_path` holds the cluster CA certificate, `cert_path` the node's certificate chain
    /// (leaf first), `key_path` its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(
        ca_path: impl AsRef<Path>,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
        name: &str,
    ) -> Result<Self, TransportError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| TransportError::io(p, e));
        let (ca_path, cert_path, key_path) =
            (ca_path.as_ref(), cert_path.as_ref(), key_path.as_ref());
        Self::build(
            (&read(ca_path)?, &ca_path.display().to_string()),
            (&read(cert_path)?, &cert_path.display().to_string()),
            (&read(key_path)?, &key_path.display().to_string()),
            name,
        )
    }

    /// Builds a node identity from PEM text held in memory.
    pub fn from_pem(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        name: &str,
    ) -> Result<Self, TransportError> {
        Self::build(
            (ca_pem, "CA certificate PEM"),
            (cert_pem, "node certificate PEM"),
            (key_pem, "node key PEM"),
            name,
        )
    }

    fn build(
        (ca_pem, ca_what): (&[u8], &str),
        (cert_pem, cert_what): (&[u8], &str),
        (key_pem, key_what): (&[u8], &str),
        name: &str,
    ) -> Result<Self, TransportError> {
        validate_node_name(name)?;
        let ca = certs_from_pem(ca_pem, ca_what)?
            .into_iter()
            .next()
            .ok_or_else(|| pem_error(ca_what, "no certificate found"))?;
        let chain = certs_from_pem(cert_pem, cert_what)?;
        if chain.is_empty() {
            return Err(pem_error(cert_what, "no certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                pem_error(key_what, "no private key found")
            }
            e => pem_error(key_what, &e.to_string()),
        })?;
        Ok(Self {
            ca,
            chain,
            key,
            name: name.to_owned(),
        })
    }

    /// The node's name (its certificate's first DNS name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster CA certificate this node trusts.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The node's certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The node's private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e.to_string()))
}

fn pem_error(what: &str, reason: &str) -> TransportError {
    TransportError::Pem {
        what: what.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "ca", "a/b", "..", "x y", "127.0.0.1", "-a"] {
            assert!(
                matches!(
                    validate_node_name(bad),
                    Err(TransportError::InvalidNodeName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for good in ["learner", "sampler-0", "node1.cluster"] {
            validate_node_name(good).unwrap();
        }
        let dup = generate_cluster(&names(&["a", "b", "a"])).unwrap_err();
        assert!(dup.to_string().contains("duplicate"), "{dup}");
    }

    #[test]
    fn generate_write_load_round_trip() {
        let certs = generate_cluster(&names(&["learner", "sampler-0"])).unwrap();
        assert_eq!(certs.nodes.len(), 2);
        assert!(certs.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(certs.nodes[1].key_pem.contains("PRIVATE KEY"));

        let dir = std::env::temp_dir().join(format!("troupe-certs-{}", std::process::id()));
        write_cluster(&dir, &certs).unwrap();
        for f in [
            "ca.pem",
            "ca.key",
            "learner.pem",
            "learner.key",
            "sampler-0.pem",
            "sampler-0.key",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca.key", "learner.key"] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        let id = NodeIdentity::load(
            dir.join("ca.pem"),
            dir.join("learner.pem"),
            dir.join("learner.key"),
            "learner",
        )
        .unwrap();
        assert_eq!(id.name(), "learner");
        assert_eq!(id.chain().len(), 1);

        // Errors name the file at fault.
        let missing = NodeIdentity::load(
            dir.join("ca.pem"),
            dir.join("nobody.pem"),
            dir.join("learner.key"),
            "learner",
        )
        .unwrap_err();
        assert!(missing.to_string().contains("nobody.pem"), "{missing}");
        let swapped = NodeIdentity::load(
            dir.join("ca.pem"),
            dir.join("learner.key"),
            dir.join("learner.key"),
            "learner",
        )
        .unwrap_err();
        assert!(
            swapped.to_string().contains("learner.key")
                && swapped.to_string().contains("no certificate"),
            "{swapped}"
        );
        let no_key = NodeIdentity::load(
            dir.join("ca.pem"),
            dir.join("learner.pem"),
            dir.join("learner.pem"),
            "learner",
        )
        .unwrap_err();
        assert!(no_key.to_string().contains("learner.pem"), "{no_key}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
