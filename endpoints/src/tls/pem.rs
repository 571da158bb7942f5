//! Reading a private key and its certificates from PEM files, and pairing them: the leaf
//! is the certificate whose public key matches the key (txsni's rule).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};

/// Loads a private key and its certificate chain from PEM files.
///
/// The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC); the first key in `key_file` is used.
/// The certificates are read from `cert_file` then `chain_file`, in any order: the leaf is
/// the one whose public key matches the key (txsni's rule), and the others follow it in the
/// order they were read.
///
/// # Errors
/// [`Error::Certificate`] naming the file and what is wrong: unreadable, no key, no
/// certificate, no certificate matching the key, or a key type rustls cannot sign with.
pub fn load_certified_key(
    key_file: &Path,
    cert_file: &Path,
    chain_file: Option<&Path>,
) -> Result<CertifiedKey> {
    let fault = |file: &Path, reason: String| Error::Certificate {
        subject: file.display().to_string(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        fault(
            key_file,
            format!("no private key in PKCS#8, PKCS#1 or SEC1 PEM form ({e})"),
        )
    })?;
    let mut certificates = Vec::new();
    for file in std::iter::once(cert_file).chain(chain_file) {
        let found: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| fault(file, format!("cannot read certificates: {e}")))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| fault(file, format!("a certificate is not valid PEM: {e}")))?;
        if found.is_empty() && chain_file == Some(file) {
            return Err(fault(file, "the chain file holds no certificate".into()));
        }
        certificates.extend(found);
    }
    assemble(key, certificates).map_err(|assembly| match assembly {
        Assembly::KeyUnusable(e) => fault(key_file, format!("the private key cannot be used: {e}")),
        Assembly::NoCertificate => fault(cert_file, "no certificate in PEM form".into()),
        Assembly::NoMatch => fault(
            cert_file,
            format!(
                "no certificate matches the private key in {}",
                key_file.display()
            ),
        ),
    })
}

/// Why [`assemble`] could not pair a key with its certificates.
pub(crate) enum Assembly {
    /// rustls cannot sign with the key; the reason.
    KeyUnusable(String),
    /// There is no certificate at all.
    NoCertificate,
    /// No certificate holds the key's public key.
    NoMatch,
}

/// The served form of a private key and certificates in any order: the leaf (the
/// certificate matching the key, txsni's rule) first, then the others in their order.
pub(crate) fn assemble(
    key: PrivateKeyDer<'static>,
    mut certificates: Vec<CertificateDer<'static>>,
) -> std::result::Result<CertifiedKey, Assembly> {
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| Assembly::KeyUnusable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(Assembly::NoCertificate);
    }
    let leaf = (0..certificates.len())
        .find(|&i| {
            CertifiedKey::new(vec![certificates[i].clone()], signing_key.clone())
                .keys_match()
                .is_ok()
        })
        .ok_or(Assembly::NoMatch)?;
    let leaf_der = certificates.remove(leaf);
    let mut chain = vec![leaf_der];
    chain.extend(certificates);
    Ok(CertifiedKey::new(chain, signing_key))
}
