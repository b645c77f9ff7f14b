//! Connecting the way libpq does, so a team's existing `DATABASE_URL`, `PG*` variables and
//! `~/.pgpass` work unchanged: a URL or `key=value` string, completed by `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT` and the password file,
//! with real TLS (rustls) for every `sslmode` libpq knows.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require` and reads no environment,
//! so zdm takes the TLS options out of the string before handing the rest to it.
//! <https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-SSLMODE>

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, Config, NoTls};

use super::{DbError, message};

/// libpq's `sslmode`. `allow` is treated as `prefer` (both accept either; zdm tries TLS first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// Everything needed to open a connection, resolved once from the flags and the environment.
#[derive(Clone)]
pub struct ConnectOptions {
    config: Config,
    ssl: SslMode,
    root_cert: Option<String>,
    /// `user@host:port/db`, never with the password: what messages name.
    pub target: String,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectOptions({}, {:?})", self.target, self.ssl)
    }
}

/// Where libpq-style values come from: the process environment, or a fixed map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl ConnectOptions {
    /// Whether the server is on this machine: every host a Unix socket, `localhost` or a
    /// loopback address. Then its cores are this machine's.
    pub fn is_local(&self) -> bool {
        use tokio_postgres::config::Host;
        let hosts = self.config.get_hosts();
        !hosts.is_empty()
            && hosts.iter().all(|host| match host {
                Host::Tcp(name) => {
                    name == "localhost"
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
                #[cfg(unix)]
                Host::Unix(_) => true,
            })
    }

    /// Resolves a connection string (or none: then only the environment and libpq's defaults).
    pub fn resolve(url: Option<&str>, env: &dyn Environment) -> Result<ConnectOptions, DbError> {
        let invalid = |message: String| DbError::Connect {
            target: url.map_or_else(|| "the database".to_owned(), super::redact),
            message,
        };
        let (rest, tls) = take_tls_options(url.unwrap_or(""));
        let env_port = match env.var("PGPORT") {
            Some(port) if port.parse::<u16>().is_err() => {
                return Err(invalid(format!("PGPORT {port:?} is not a port number")));
            }
            port => port,
        };
        // libpq takes PGPORT for a URL's hosts that name no port; tokio-postgres would fill in
        // 5432 while parsing, so the port goes into the URL first.
        let rest = match &env_port {
            Some(port) => url_with_default_port(&rest, port).unwrap_or(rest),
            None => rest,
        };
        let mut config = if rest.trim().is_empty() {
            Config::new()
        } else {
            Config::from_str(&rest).map_err(|e| invalid(message(&e)))?
        };
        if config.get_hosts().is_empty() {
            match env.var("PGHOST") {
                Some(host) => {
                    for h in host.split(',') {
                        config.host(h);
                    }
                }
                None => default_host(&mut config),
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = env_port.and_then(|p| p.parse().ok())
        {
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env
                .var("PGUSER")
                .or_else(|| env.var("USER"))
                .unwrap_or_else(|| "postgres".to_owned());
            config.user(user);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env.var("PGDATABASE")
        {
            config.dbname(db);
        }
        if config.get_application_name().is_none() {
            config.application_name("zdm");
        }
        if config.get_password().is_none() {
            let password = env.var("PGPASSWORD").or_else(|| {
                let file = env
                    .var("PGPASSFILE")
                    .map(PathBuf::from)
                    .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
                password_from_file(&file, &config)
            });
            if let Some(p) = password {
                config.password(p);
            }
        }
        let ssl = match tls.mode.or_else(|| env.var("PGSSLMODE")) {
            Some(mode) => mode.parse().map_err(invalid)?,
            None => SslMode::Prefer,
        };
        let root_cert = tls
            .root_cert
            .or_else(|| env.var("PGSSLROOTCERT"))
            .or_else(|| {
                let default = Path::new(&env.var("HOME")?).join(".postgresql/root.crt");
                default
                    .exists()
                    .then(|| default.to_string_lossy().into_owned())
            });
        config.ssl_mode(match ssl {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        Ok(ConnectOptions {
            target: describe(&config),
            config,
            ssl,
            root_cert,
        })
    }

    /// The same server, another database (tests and tools that create databases).
    pub fn with_dbname(&self, db: &str) -> ConnectOptions {
        let mut out = self.clone();
        out.config.dbname(db);
        out.target = describe(&out.config);
        out
    }

    /// Opens a connection; its task runs on the current runtime until the client is dropped.
    pub async fn connect(&self) -> Result<Client, DbError> {
        let failed = |message: String| DbError::Connect {
            target: self.target.clone(),
            message,
        };
        if self.ssl == SslMode::Disable {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| failed(message(&e)))?;
            spawn_connection(connection);
            return Ok(client);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config().map_err(failed)?);
        let (client, connection) = self
            .config
            .connect(tls)
            .await
            .map_err(|e| failed(message(&e)))?;
        spawn_connection(connection);
        Ok(client)
    }

    /// A pool of up to `size` connections like the one `connect` opens, for work that runs on
    /// several sessions at once (a backfill's workers). Connections open when first taken.
    pub fn pool(&self, size: usize) -> Result<deadpool_postgres::Pool, DbError> {
        let failed = |message: String| DbError::Connect {
            target: self.target.clone(),
            message,
        };
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = if self.ssl == SslMode::Disable {
            deadpool_postgres::Manager::from_config(self.config.clone(), NoTls, manager_config)
        } else {
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config().map_err(failed)?);
            deadpool_postgres::Manager::from_config(self.config.clone(), tls, manager_config)
        };
        deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(|e| failed(e.to_string()))
    }

    /// The same server and database, its sessions named `name` in `pg_stat_activity`.
    pub fn with_application_name(&self, name: &str) -> ConnectOptions {
        let mut out = self.clone();
        out.config.application_name(name);
        out
    }

    /// The rustls configuration for the sslmode: `prefer` and `require` (without a root
    /// certificate) encrypt without checking who answers, as libpq does; `require` with a root
    /// certificate and `verify-ca` check the chain; `verify-full` also the host name.
    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let verify_chain = match self.ssl {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root_cert.is_some(),
            _ => false,
        };
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
            let roots = self.root_store()?;
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| e.to_string())?;
            if self.ssl == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly { inner: webpki })
            }
        } else {
            Arc::new(EncryptOnly { algorithms })
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    /// Root certificates: `sslrootcert` (a PEM file, or `system`), `~/.postgresql/root.crt`,
    /// else the system's store.
    fn root_store(&self) -> Result<Arc<RootCertStore>, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            Some(path) if path != "system" => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read the root certificate {path}: {e}"))?
                {
                    let cert =
                        cert.map_err(|e| format!("cannot read the root certificate {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("invalid root certificate in {path}: {e}"))?;
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        Ok(Arc::new(roots))
    }
}

fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("connection closed: {}", message(&e));
        }
    });
}

/// libpq's default: the Unix socket directory when a server's socket is there, else localhost.
fn default_host(config: &mut Config) {
    for dir in ["/var/run/postgresql", "/tmp"] {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            config.host_path(dir);
            return;
        }
    }
    config.host("localhost");
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        // An IPv6 address is bracketed, as in a URL, so the port stays readable.
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[derive(Default)]
struct TlsOptions {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// A `postgres://` URL whose hosts name no port, with `port` added to each; `None` when the URL
/// names a port, names no host (the default socket), or is a `key=value` string.
fn url_with_default_port(url: &str, port: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let scheme = &url[..scheme_end];
    if !matches!(scheme, "postgres://" | "postgresql://") {
        return None;
    }
    let rest = &url[scheme_end..];
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // `[::1]:5432` names a port; a bare IPv6 address is always bracketed in a URL.
    let names_port = |h: &str| match h.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => h.contains(':'),
    };
    if hosts.is_empty() || hosts.split(',').any(names_port) {
        return None;
    }
    let hosts: Vec<String> = hosts.split(',').map(|h| format!("{h}:{port}")).collect();
    Some(format!("{scheme}{userinfo}{}{tail}", hosts.join(",")))
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or a `key=value` string.
fn take_tls_options(conninfo: &str) -> (String, TlsOptions) {
    let mut tls = TlsOptions::default();
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            tls.mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            tls.root_cert = Some(value.to_owned());
            true
        }
        _ => false,
    };
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            return (conninfo.to_owned(), tls);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, &percent_decode(v))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, tls);
    }
    // key=value pairs; values with spaces are quoted, which sslmode and paths rarely need.
    let kept: Vec<&str> = conninfo
        .split_whitespace()
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            !take(k, v.trim_matches('\''))
        })
        .collect();
    (kept.join(" "), tls)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The password for this connection from a libpq password file
/// (`hostname:port:database:username:password`, `*` matches anything, `\` escapes).
/// Like libpq, a file others can read is ignored.
fn password_from_file(path: &Path, config: &Config) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "ignoring the password file {}: others can read it (chmod 0600 it)",
                path.display()
            );
            return None;
        }
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        // libpq matches socket connections with "localhost".
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, &host, &port, db, user)
}

fn pgpass_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass_line(line);
        let [h, p, d, u, password] = fields.as_slice() else {
            continue;
        };
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(h, host) && matches(p, port) && matches(d, db) && matches(u, user) {
            return Some(password.clone());
        }
    }
    None
}

/// Splits a password-file line on unescaped `:`; the fifth field keeps any later colons.
fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, but anyone may answer.
/// The handshake signatures are still checked, so the session key belongs to the certificate.
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Env(HashMap<&'static str, &'static str>);

    impl Environment for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> Env {
        Env(pairs.iter().copied().collect())
    }

    #[test]
    fn tls_options_leave_the_rest_for_tokio_postgres() {
        let (rest, tls) =
            take_tls_options("postgres://app@db/prod?sslmode=verify-full&connect_timeout=5");
        assert_eq!(rest, "postgres://app@db/prod?connect_timeout=5");
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        let (rest, tls) = take_tls_options("host=db sslmode=require sslrootcert=/ca.pem user=app");
        assert_eq!(rest, "host=db user=app");
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));
    }

    #[test]
    fn environment_fills_what_the_url_leaves_out() {
        let e = env(&[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6543"),
            ("PGUSER", "app"),
            ("PGDATABASE", "prod"),
            ("PGPASSWORD", "s3cret"),
            ("PGSSLMODE", "verify-ca"),
        ]);
        let o = ConnectOptions::resolve(None, &e).unwrap();
        assert_eq!(o.target, "app@db.internal:6543/prod");
        assert_eq!(o.ssl, SslMode::VerifyCa);
        assert_eq!(o.config.get_password(), Some(&b"s3cret"[..]));
        // The URL wins over the environment; as in libpq, PGPORT still fills in the port of a
        // URL that names none.
        let o = ConnectOptions::resolve(Some("postgres://other@h2/x?sslmode=disable"), &e).unwrap();
        assert_eq!(o.target, "other@h2:6543/x");
        assert_eq!(o.ssl, SslMode::Disable);
        assert!(!format!("{o:?}").contains("s3cret"));
        let o = ConnectOptions::resolve(Some("postgres://other@h2:7000/x"), &e).unwrap();
        assert_eq!(o.target, "other@h2:7000/x");
        let o = ConnectOptions::resolve(Some("postgresql://u:p@a,b/x"), &e).unwrap();
        assert_eq!(o.config.get_ports(), [6543, 6543]);
        let o = ConnectOptions::resolve(Some("postgres://u@[::1]/x"), &e).unwrap();
        assert_eq!(o.target, "u@[::1]:6543/x");
    }

    #[test]
    fn a_server_on_this_machine_is_local() {
        let local = |url: &str| {
            ConnectOptions::resolve(Some(url), &env(&[]))
                .unwrap()
                .is_local()
        };
        assert!(local("postgres://a@localhost/x"));
        assert!(local("postgres://a@127.0.0.1:5433/x"));
        assert!(local("host=/var/run/postgresql dbname=x"));
        assert!(!local("postgres://a@db.internal/x"));
        assert!(!local("postgres://a@localhost,db.internal/x"));
    }

    #[test]
    fn bad_sslmode_is_named() {
        let err = ConnectOptions::resolve(Some("postgres://a@h/x?sslmode=strict"), &env(&[]))
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid sslmode \"strict\""),
            "{err}"
        );
    }

    #[test]
    fn password_file_matching() {
        let text =
            "# comment\ndb:5432:prod:app:first\n*:*:*:app:fallback\nh\\:x:*:*:*:pa\\:ss:word\n";
        assert_eq!(
            pgpass_lookup(text, "db", "5432", "prod", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            pgpass_lookup(text, "other", "1", "y", "app").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            pgpass_lookup(text, "h:x", "1", "y", "bob").as_deref(),
            Some("pa:ss:word")
        );
        assert_eq!(pgpass_lookup(text, "other", "1", "y", "bob"), None);
    }
}
