//! TLS set-up shared by the control and data connections: the server's certificate and key
//! loaded into one rustls `ServerConfig` (start-up and SIGHUP), and per control session a copy
//! of it whose session cache belongs to that session alone, so a `PROT P` data connection that
//! resumes a TLS session proves it comes from the client of that control connection.
//!
//! Nothing here does I/O on connections: the shard drives each `rustls::ServerConnection`
//! from its readiness polls (`server::tls`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use rustls::server::{NoServerSessionStorage, StoresServerSessions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Sessions one control connection's cache keeps: the control connection's own, and those
/// the data connections' handshakes add (TLS 1.3 sends two tickets per handshake). Oldest go
/// first; an entry is a few hundred bytes.
const SESSIONS_PER_CONTROL: usize = 16;

/// A certificate or key that cannot be used, naming the config key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsError {
    pub key: &'static str,
    pub reason: String,
}

impl TlsError {
    fn cert(reason: String) -> TlsError {
        TlsError {
            key: "tls_cert",
            reason,
        }
    }

    fn key(reason: String) -> TlsError {
        TlsError {
            key: "tls_key",
            reason,
        }
    }
}

/// Load a PEM certificate chain and private key into a server configuration: TLS 1.2 and 1.3
/// (rustls's defaults: no TLS 1.0/1.1), ALPN "ftp" when the client offers ALPN, no session
/// cache and no ticketer of its own (each control session gets its own cache, see `for_session`).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::cert(format!("{cert:?}: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::cert(format!("{cert:?}: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::cert(format!(
            "{cert:?}: no PEM certificate in it"
        )));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::key(format!("{key:?}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::key(format!("{key:?} does not fit {cert:?}: {e}")))?;
    // ALPN (RFC 7301): "ftp" is FTP's registered protocol id. A client that offers only other
    // protocols ("h2", "http/1.1": a browser sent here by a cross-protocol attack such as
    // ALPACA) is refused with a no_application_protocol alert; a client that offers none, as
    // curl, lftp, FileZilla and ftplib do, is served.
    config.alpn_protocols = vec![b"ftp".to_vec()];
    // The builder's ticketer produces no tickets: stateless tickets would let any client that
    // holds one resume on any connection. Sessions live in the per-control-session cache
    // instead (for TLS 1.3 rustls then sends tickets that are keys into that cache).
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// TLS 1.3 tickets the control connection hands out after its handshake. Clients that use a
/// ticket only once (rustls, for one) need one per data connection until downloads bring more.
const CONTROL_TICKETS: usize = 4;

/// The TLS configurations of one control session: all share a session cache of their own, so
/// only sessions made on this control connection can be resumed on its data connections.
pub struct SessionConfigs {
    pub control: Arc<ServerConfig>,
    /// Download and listing data connections send TLS 1.3 tickets (two, rustls's default), which
    /// the client reads with the data and uses for later data connections.
    pub download: Arc<ServerConfig>,
    /// Upload data connections send none: an uploading client never reads them, and a socket
    /// closed with unread bytes is reset (RST instead of FIN), which can overtake the upload's
    /// last bytes and its close_notify (curl failed about one upload in four so, with 426).
    pub upload: Arc<ServerConfig>,
}

/// `base` with a session cache of its own, for one control connection and its data connections.
pub fn for_session(base: &ServerConfig) -> SessionConfigs {
    let mut control = base.clone();
    control.session_storage = Arc::new(SessionCache::default());
    // Data connections keep their traffic keys after the handshake, so they can be handed to
    // kernel TLS (server::tls::into_kernel).
    let mut download = control.clone();
    download.enable_secret_extraction = true;
    let mut upload = download.clone();
    upload.send_tls13_tickets = 0;
    control.send_tls13_tickets = CONTROL_TICKETS;
    SessionConfigs {
        control: Arc::new(control),
        download: Arc::new(download),
        upload: Arc::new(upload),
    }
}

/// One control session's TLS sessions, bounded to [`SESSIONS_PER_CONTROL`], least recently
/// used evicted.
///
/// `take` does not remove: rustls takes a TLS 1.3 ticket out of the cache when it is used, but
/// FTP clients resume the control connection's session for every data connection (Python's
/// `session=self.sock.session`, GnuTLS clients), so a ticket must stay usable. That only
/// weakens the single-use of tickets within one client's own connections; early data (the
/// case replays matter for) is off.
#[derive(Debug, Default)]
struct SessionCache {
    entries: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= SESSIONS_PER_CONTROL {
            entries.pop_front();
        }
        entries.push_back((key, value));
        true
    }

    /// A session that is used moves to the back, so eviction takes the least recently used:
    /// GnuTLS clients (lftp, FileZilla) resume the control connection's first session on every
    /// data connection, and the tickets that downloads and listings add must not push it out
    /// (lftp's `mirror` failed with 522 after about eight data connections when the oldest
    /// went first).
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(at)?;
        let value = entry.1.clone();
        entries.push_back(entry);
        Some(value)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_tickets_usable() {
        let cache = SessionCache::default();
        for i in 0..(SESSIONS_PER_CONTROL as u8 + 4) {
            assert!(cache.put(vec![i], vec![i, i]));
        }
        assert_eq!(cache.get(&[0]), None, "the oldest went first");
        let last = SESSIONS_PER_CONTROL as u8 + 3;
        assert_eq!(cache.take(&[last]), Some(vec![last, last]));
        assert_eq!(cache.take(&[last]), Some(vec![last, last]));
        assert_eq!(
            cache.entries.lock().unwrap().len(),
            SESSIONS_PER_CONTROL,
            "bounded"
        );
    }

    #[test]
    fn a_session_in_use_outlives_newer_ones() {
        let cache = SessionCache::default();
        cache.put(b"control".to_vec(), b"c".to_vec());
        for i in 0..(SESSIONS_PER_CONTROL as u8 * 3) {
            // Each data connection resumes the control's session, then adds tickets of its own.
            assert_eq!(cache.take(b"control"), Some(b"c".to_vec()), "after {i}");
            cache.put(vec![i], vec![i]);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), SESSIONS_PER_CONTROL);
    }

    #[test]
    fn unusable_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        assert_eq!(load(&missing, &missing).unwrap_err().key, "tls_cert");
        assert_eq!(load(&junk, &junk).unwrap_err().key, "tls_cert");
    }
}
