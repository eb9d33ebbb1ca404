//! `--web.config.file`: TLS and basic authentication in the format of the Prometheus
//! exporter-toolkit (node_exporter's `--web.config.file`), so one file serves both:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt   # relative paths are the config file's directory's
//!   key_file: server.key
//! basic_auth_users:
//!   prometheus: $2y$10$...  # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Every key rmapprof does not implement is refused rather than ignored (a `client_ca_file`
//! that were silently dropped would weaken what the file asks for). The file, the
//! certificate and the key are read once, at start, before the probes are loaded.

use anyhow::{Context, Result};
use axum::{
    body::Body,
    http::{header, HeaderMap, Response, StatusCode},
};
use base64::Engine as _;
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use subtle::ConstantTimeEq as _;
use tokio_rustls::rustls;

use crate::errors::usage;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFiles>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// What the config file asks for.
pub struct WebConfig {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl WebConfig {
    /// Reads `path`: an unreadable file is an error (exit 1), a file that says something
    /// wrong a usage error (exit 2).
    pub fn load(path: &Path) -> Result<Self> {
        let what = || format!("--web.config.file {}", path.display());
        let text = std::fs::read_to_string(path).with_context(what)?;
        let file: File = serde_yaml_ng::from_str::<Option<File>>(&text)
            .map_err(|e| usage(format!("{}: {e}", what())))?
            .unwrap_or(File { tls_server_config: None, basic_auth_users: None });
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls(&base.join(t.cert_file), &base.join(t.key_file)))
            .transpose()?;
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                Some(Arc::new(BasicAuth::new(users).map_err(|e| usage(format!("{}: {e}", what())))?))
            }
            _ => None,
        };
        Ok(Self { tls, auth })
    }
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> anyhow::Error {
    match e {
        rustls_pki_types::pem::Error::Io(e) => anyhow::Error::new(e).context(format!("{}", path.display())),
        e => usage(format!("{}: {e}", path.display())),
    }
}

fn tls(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(usage(format!("{}: no certificate in the file", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    // ring, which builds with a C compiler alone (aws-lc-rs, the provider with post-quantum key
    // exchange, needs cmake); the classical key exchanges are what Prometheus offers too.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| usage(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `basic_auth_users`: user → bcrypt hash.
pub struct BasicAuth {
    users: Vec<(String, String)>,
    /// Credentials that verified, so that a scrape every few seconds does not cost a bcrypt
    /// hash each (as exporter-toolkit caches them); bounded.
    verified: Mutex<HashSet<(String, String)>>,
}

/// A valid hash verified against when the user is unknown, so that an unknown user takes as
/// long to refuse as a wrong password.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
const VERIFIED_MAX: usize = 64;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        for (user, hash) in &users {
            hash.parse::<bcrypt::HashParts>().map_err(|e| format!("user {user}: not a bcrypt hash ({e})"))?;
        }
        Ok(Self { users: users.into_iter().collect(), verified: Mutex::default() })
    }

    /// Whether the request's `Authorization: Basic` names a user with the right password.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else { return false };
        // Every user is compared, each in constant time: which one matched takes no longer.
        let mut found: Option<&str> = None;
        for (name, hash) in &self.users {
            if bool::from(name.as_bytes().ct_eq(user.as_bytes())) {
                found = Some(hash);
            }
        }
        let key = (user, password);
        if found.is_some() && self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let hash = found.unwrap_or(DUMMY_HASH).to_owned();
        let password = key.1.clone();
        // bcrypt takes tens of milliseconds by design: off the runtime's thread.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && found.is_some();
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_MAX {
                    v.clear();
                }
                v.insert(key);
            }
        }
        ok
    }
}

fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// 401, asking for basic authentication.
pub fn unauthorized() -> Response<Body> {
    let mut r = Response::new(Body::from("rmapprof: unauthorized\n"));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"rmapprof\""));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<WebConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, yaml).unwrap();
        WebConfig::load(&p)
    }

    fn status(r: Result<WebConfig>) -> (u8, String) {
        let e = r.err().expect("an error");
        (crate::errors::exit_status(&e), format!("{e:#}"))
    }

    /// Bad files are one-line errors: exit 2 for what the file says, 1 for what cannot be read.
    #[test]
    fn config_errors() {
        let (code, e) = status(WebConfig::load(Path::new("/no/such/web.yml")));
        assert_eq!(code, 1, "{e}");
        for (yaml, says) in [
            ("basic_auth_users: [", "web.yml"),
            ("basic_auth_users:\n  alice: plaintext\n", "not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n",
                "client_ca_file",
            ),
            ("http_server_config: {}\n", "http_server_config"),
        ] {
            let (code, e) = status(load(yaml));
            assert_eq!(code, 2, "{yaml}: {e}");
            assert!(e.contains(says) && !e.contains('\n'), "{yaml}: {e}");
        }
        let (code, e) =
            status(load("tls_server_config:\n  cert_file: /no/such.crt\n  key_file: /no/such.key\n"));
        assert_eq!(code, 1, "{e}");
        assert!(e.contains("/no/such.crt"), "{e}");
        assert!(load("").is_ok_and(|c| c.tls.is_none() && c.auth.is_none()));
    }

    #[tokio::test]
    async fn basic_auth_checks_user_and_password() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = load(&format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
        let auth = c.auth.unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(auth.allows(&with(&basic("prom:s3cret"))).await);
        assert!(auth.allows(&with(&basic("prom:s3cret"))).await, "cached");
        assert!(!auth.allows(&with(&basic("prom:wrong"))).await);
        assert!(!auth.allows(&with(&basic("other:s3cret"))).await);
        assert!(!auth.allows(&with("Bearer x")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
    }
}
