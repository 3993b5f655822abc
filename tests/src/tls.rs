//! A TLS terminator in front of DynamoDB Local, so that a function talks HTTPS to its
//! store as it does on AWS (DynamoDB Local speaks plain HTTP, which hides the handshake
//! every new instance pays). Its certificate is made on the spot for `localhost` and written
//! to a PEM file; a process trusts it through `SSL_CERT_FILE` (the SDK's rustls client reads
//! its trust store with rustls-native-certs, which honours that variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub struct TlsTerminator {
    pub port: u16,
    /// TLS handshakes completed so far.
    pub handshakes: Arc<std::sync::atomic::AtomicUsize>,
    /// The certificate to trust (PEM).
    pub ca_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTerminator {
    /// Listens on 127.0.0.1 (a free port) and forwards each connection, decrypted, to
    /// `upstream`. Runs on the current tokio runtime.
    pub async fn start(upstream: SocketAddr, dir: &Path) -> Result<TlsTerminator, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("key: {e}"))?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| format!("certificate: {e}"))?;
        let ca_file = dir.join("local-dynamodb-ca.pem");
        std::fs::write(&ca_file, cert.pem()).map_err(|e| e.to_string())?;
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| format!("TLS config: {e}"))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("TLS terminator: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsTerminator {
            port,
            handshakes,
            ca_file,
            task,
        })
    }

    /// The endpoint a client with `SSL_CERT_FILE` = [`Self::ca_file`] can use.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
