//! The authority's TLS identity, in `tls/` of its data directory: `ca.pem` (the private CA
//! devices and admins trust, named in their configuration), `ca.key`, `server.pem` and
//! `server.key` (the keys mode 0600). `init` makes the CA and a server certificate for the
//! names and addresses it is given, or takes the operator's own PEM certificate and key
//! (then there is no private CA, and clients trust whatever CA issued it).

use std::path::{Path, PathBuf};

use entitle_proto::signing;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Identity, ServerTlsConfig};

use crate::DataDir;
use crate::error::{Error, Result};

/// Names every server certificate made here covers, besides those given.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long the private CA is valid.
const CA_DAYS: i64 = 3650;
/// How long a server certificate made here is valid.
const SERVER_DAYS: i64 = 825;

/// Where the server certificate comes from.
#[derive(Clone, Debug, Default)]
pub enum TlsSource {
    /// A private CA and a certificate it issues for these host names and addresses (and
    /// this machine's loopback names).
    #[default]
    PrivateCa,
    /// The same, for more names.
    PrivateCaFor(Vec<String>),
    /// The operator's certificate chain and key, PEM.
    Operator {
        /// The certificate chain.
        certificate: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

impl DataDir {
    /// The private CA's certificate, the file clients trust.
    pub fn tls_ca(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    /// The server certificate chain.
    pub fn tls_certificate(&self) -> PathBuf {
        self.tls_dir().join("server.pem")
    }
    /// The server's private key (secret).
    pub fn tls_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }
    fn tls_dir(&self) -> PathBuf {
        self.path().join("tls")
    }
}

/// Makes (or takes) the TLS identity of a new data directory.
pub(crate) fn create(files: &DataDir, source: &TlsSource) -> Result<()> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| Error::Internal(format!("cannot write {what}: {e}"))
    };
    std::fs::create_dir_all(files.tls_dir()).map_err(io(&files.tls_dir()))?;
    let names = match source {
        TlsSource::Operator { certificate, key } => {
            let read = |path: &Path, marker: &str| {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::InvalidArgument(format!("cannot read {}: {e}", path.display()))
                })?;
                if !text.contains(marker) {
                    return Err(Error::InvalidArgument(format!(
                        "{} is not a PEM file holding {marker}",
                        path.display()
                    )));
                }
                Ok(text)
            };
            let chain = read(certificate, "-----BEGIN CERTIFICATE-----")?;
            let secret = read(key, "PRIVATE KEY-----")?;
            std::fs::write(files.tls_certificate(), chain).map_err(io(&files.tls_certificate()))?;
            signing::write_secret(&files.tls_key(), secret.as_bytes())
                .map_err(io(&files.tls_key()))?;
            return Ok(());
        }
        TlsSource::PrivateCa => Vec::new(),
        TlsSource::PrivateCaFor(names) => names.clone(),
    };
    let made = private_ca(&names)?;
    std::fs::write(files.tls_ca(), &made.ca_pem).map_err(io(&files.tls_ca()))?;
    let ca_key = files.tls_dir().join("ca.key");
    signing::write_secret(&ca_key, made.ca_key_pem.as_bytes()).map_err(io(&ca_key))?;
    std::fs::write(files.tls_certificate(), &made.server_pem)
        .map_err(io(&files.tls_certificate()))?;
    signing::write_secret(&files.tls_key(), made.server_key_pem.as_bytes())
        .map_err(io(&files.tls_key()))?;
    Ok(())
}

/// A private CA and one server certificate it issued, PEM.
pub struct MadeCa {
    /// The CA certificate.
    pub ca_pem: String,
    /// The CA's key.
    pub ca_key_pem: String,
    /// The server certificate (issued by the CA).
    pub server_pem: String,
    /// The server's key.
    pub server_key_pem: String,
}

/// Makes a CA and a server certificate for `names` plus this machine's loopback names,
/// valid from now.
pub fn private_ca(names: &[String]) -> Result<MadeCa> {
    let now = time::OffsetDateTime::now_utc();
    private_ca_valid(names, now, now + time::Duration::days(SERVER_DAYS))
}

/// As [`private_ca`], with the server certificate valid from `not_before` to `not_after`
/// (for tests of an expired certificate).
pub fn private_ca_valid(
    names: &[String],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<MadeCa> {
    let bad = |e: rcgen::Error| Error::InvalidArgument(format!("cannot make a certificate: {e}"));
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "entitle authority private CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(CA_DAYS);
    let ca_key = KeyPair::generate().map_err(bad)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;

    let mut all: Vec<String> = LOCAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for name in names {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let mut server = CertificateParams::new(all.clone()).map_err(|e| {
        Error::InvalidArgument(format!("not a host name or address in {all:?}: {e}"))
    })?;
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, "entitle authority");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = not_before;
    server.not_after = not_after;
    let server_key = KeyPair::generate().map_err(bad)?;
    let issuer = Issuer::new(ca, &ca_key);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(bad)?;
    Ok(MadeCa {
        ca_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// The server side of TLS, from the data directory's certificate and key.
pub fn server_config(files: &DataDir) -> Result<ServerTlsConfig> {
    let certificate = std::fs::read(files.tls_certificate()).map_err(|e| {
        Error::FailedPrecondition(format!(
            "cannot read the TLS certificate {}: {e} (`entitle-authority init` makes one)",
            files.tls_certificate().display()
        ))
    })?;
    let key = signing::read_secret(&files.tls_key()).map_err(|e| {
        Error::FailedPrecondition(format!(
            "cannot read the TLS key {}: {e}",
            files.tls_key().display()
        ))
    })?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(certificate, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_a_ca_and_a_server_certificate_with_secret_keys() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a directory");
        let files = DataDir::new(dir.path());
        create(
            &files,
            &TlsSource::PrivateCaFor(vec!["authority.example".into()]),
        )
        .expect("made");
        for secret in [files.tls_key(), files.tls_dir().join("ca.key")] {
            let mode = std::fs::metadata(&secret)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
        }
        let ca = std::fs::read_to_string(files.tls_ca()).expect("ca");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server_config(&files).is_ok());
    }

    #[test]
    fn operator_files_must_be_pem() {
        let dir = tempfile::tempdir().expect("a directory");
        let files = DataDir::new(dir.path().join("a"));
        let not_pem = dir.path().join("x.pem");
        std::fs::write(&not_pem, "hello").expect("written");
        let e = create(
            &files,
            &TlsSource::Operator {
                certificate: not_pem.clone(),
                key: not_pem,
            },
        )
        .expect_err("refused");
        assert!(e.to_string().contains("is not a PEM file"), "{e}");
        let e = private_ca(&["caf\u{e9}.example".into()])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not a host name"), "{e}");
    }
}
