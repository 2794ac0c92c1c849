//! TLS for the PostgreSQL store, through rustls with the ring provider (the same rustls the
//! webhooks use) and `tokio-postgres-rustls`, which plugs it into the driver.
//!
//! `sslmode` in the URL chooses, with libpq's meanings: `disable` (plain TCP), `prefer` (TLS
//! when the server offers it, the certificate unchecked; the default), `require` (TLS or no
//! connection; the certificate unchecked, unless a CA file is set, which makes it `verify-ca`
//! as in libpq), `verify-ca` (the certificate must chain to a trusted CA) and `verify-full`
//! (and name the host the URL connects to). The trusted CAs are those of the CA file
//! (`[flow.postgres] ca_file`, PEM) when set, else the Mozilla roots bundled in
//! `webpki-roots`. The driver knows only the first three modes, so the mode is taken out of the
//! URL here and the driver is asked to require TLS for the verifying ones.

use crate::store::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS (`sslmode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it; its certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is checked only against a CA file, if one is set.
    Require,
    /// TLS with a certificate that chains to a trusted CA.
    VerifyCa,
    /// TLS with a certificate that chains to a trusted CA and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, StoreError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(StoreError::Backend(format!(
                    "the PostgreSQL URL's sslmode `{other}` is not one flow knows: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// What the driver is asked for.
    pub(super) fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

/// Takes `sslmode` out of a connection string, a URL (`?sslmode=verify-full&...`) or key=value
/// pairs (`host=db sslmode=require`); returns the rest and the mode (`prefer` if none).
pub(super) fn take_sslmode(url: &str) -> Result<(String, SslMode), StoreError> {
    let mut mode = None;
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| match pair.strip_prefix("sslmode=") {
                        Some(value) => {
                            mode = Some(value.to_owned());
                            false
                        }
                        None => true,
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|pair| match pair.strip_prefix("sslmode=") {
                Some(value) => {
                    mode = Some(value.trim_matches('\'').to_owned());
                    false
                }
                None => true,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mode = mode.as_deref().map(SslMode::parse).transpose()?;
    Ok((rest, mode.unwrap_or_default()))
}

/// The driver's TLS connector for `mode`, trusting the CAs of `ca_file` (PEM) or, without one,
/// the bundled Mozilla roots.
pub(super) fn connector(
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS for PostgreSQL: {e}")))?;
    let roots = || -> Result<Arc<rustls::RootCertStore>, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in read_ca_file(path)? {
                    roots.add(cert).map_err(|e| {
                        StoreError::Backend(format!(
                            "the CA file {} holds a certificate rustls cannot use: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(Arc::new(roots))
    };
    let checked = || -> Result<Arc<rustls::client::WebPkiServerVerifier>, StoreError> {
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots()?, provider.clone())
            .build()
            .map_err(|e| StoreError::Backend(format!("TLS for PostgreSQL: {e}")))
    };
    let config = match (mode, ca_file) {
        (SslMode::VerifyFull, _) => builder
            .with_webpki_verifier(checked()?)
            .with_no_client_auth(),
        (mode, ca_file) => {
            let chain = match (mode, ca_file) {
                (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Some(checked()?),
                _ => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain,
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file; an error naming the file if it has none or cannot be read.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            StoreError::Backend(format!(
                "cannot read the CA file {} ({e}); give a PEM file of CA certificates",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(StoreError::Backend(format!(
            "the CA file {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The verifier of the modes that do not check the name: `verify-ca` (and `require` with a CA
/// file) checks the chain with `chain`, ignoring a name mismatch; `prefer` and `require`
/// without a CA file take the certificate as it comes (`chain` is `None`). Either way the
/// handshake's signatures are checked against the certificate.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

/// What to do about a connection that failed in its TLS setup, if it did: the server does not
/// speak TLS, or its certificate was refused. `None` for any other failure.
pub(super) fn explain(err: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("server does not support TLS") {
            return Some(
                "the server does not accept TLS connections and the URL's sslmode requires TLS: \
                 enable `ssl` on the server, or set sslmode=prefer (or disable) in the URL"
                    .into(),
            );
        }
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error {
            return Some(certificate_problem(why));
        }
        if let Some(other) = rustls_error {
            return Some(format!("the TLS handshake failed: {other}"));
        }
        source = e.source();
    }
    None
}

fn certificate_problem(why: &CertificateError) -> String {
    match why {
        CertificateError::UnknownIssuer => "the server's certificate is not signed by a CA flow trusts: set `ca_file` in [flow.postgres] (FLOW_POSTGRES__CA_FILE) to the PEM file of the CA that signed it, or use sslmode=require to encrypt without checking the certificate".into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => "the server's certificate does not name the host the URL connects to: connect by a name the certificate holds (its subjectAltName), or use sslmode=verify-ca to check only that a trusted CA signed it".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "the server's certificate has expired: renew it on the server".into(),
        other => format!("the server's certificate was refused ({other:?}): check the server's certificate and `ca_file` in [flow.postgres], or use sslmode=require to encrypt without checking it"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{take_sslmode, SslMode};

    #[test]
    fn sslmode_is_taken_out_of_urls_and_key_value_strings() {
        let cases = [
            ("postgres://u@h/db", "postgres://u@h/db", SslMode::Prefer),
            (
                "postgres://u@h/db?sslmode=verify-full",
                "postgres://u@h/db",
                SslMode::VerifyFull,
            ),
            (
                "postgresql://u@h/db?application_name=a&sslmode=verify-ca&connect_timeout=3",
                "postgresql://u@h/db?application_name=a&connect_timeout=3",
                SslMode::VerifyCa,
            ),
            (
                "host=h user=u sslmode=require dbname=db",
                "host=h user=u dbname=db",
                SslMode::Require,
            ),
            ("host=h sslmode='disable'", "host=h", SslMode::Disable),
        ];
        for (url, rest, mode) in cases {
            let (taken, found) = take_sslmode(url).unwrap();
            assert_eq!((taken.as_str(), found), (rest, mode), "{url}");
        }
    }

    #[test]
    fn an_unknown_sslmode_is_refused_with_the_modes_flow_knows() {
        let err = take_sslmode("postgres://u@h/db?sslmode=allow")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`allow`") && err.contains("verify-full"),
            "{err}"
        );
    }
}
