//! `NatsOptions`' connection settings reach a real nats-server 2.15 that demands them:
//! user/password, token, an NKey seed, several URLs of which one is dead, and TLS verified with
//! a CA file. Each server refuses a client without the setting, so an ignored option fails its
//! test; wrong credentials are refused at once with an error that says authorization failed and
//! names the URL.

use parti::kv::{NatsError, NatsKv, NatsOptions};
use parti::testing::NatsServer;
use parti_core::Config;
use std::path::Path;
use std::time::Duration;

/// Longer than any connect to a loopback server takes; a connect past it has hung.
const NO_HANG: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config {
        bucket_prefix: "auth".into(),
        ..Config::default()
    }
}

fn options(urls: Vec<String>) -> NatsOptions {
    NatsOptions {
        urls,
        request_timeout: Duration::from_secs(1),
        ..NatsOptions::default()
    }
}

/// Connects (creating the buckets, so JetStream requests pass too); fails the test if that
/// takes past [`NO_HANG`].
async fn connect(options: &NatsOptions) -> Result<NatsKv, NatsError> {
    tokio::time::timeout(NO_HANG, NatsKv::connect(options, &config()))
        .await
        .unwrap_or_else(|_| panic!("connect with {options:?} hung"))
        .map(|(kv, _events)| kv)
}

/// The error of a connect that must fail (`why` says why).
async fn failure(options: &NatsOptions, why: &str) -> NatsError {
    match connect(options).await {
        Ok(_) => panic!("connected with {options:?}, but {why}"),
        Err(err) => err,
    }
}

/// The connect must fail with an authorization error naming the server's URL.
async fn refused(server: &NatsServer, options: &NatsOptions) {
    let err = failure(options, "the server must refuse it").await;
    assert!(matches!(err, NatsError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("authorization failed") && message.contains(&server.url()),
        "{message}"
    );
}

#[tokio::test]
async fn user_and_password_are_sent_and_a_wrong_password_is_refused() {
    let mut server = NatsServer::start_with(&["--user", "alice", "--pass", "s3cret"]).unwrap();
    let url = server.url();
    let with = |user: &str, password: &str| NatsOptions {
        user: Some(user.into()),
        password: Some(password.into()),
        ..options(vec![url.clone()])
    };
    connect(&with("alice", "s3cret")).await.expect("accepted");
    refused(&server, &with("alice", "wrong")).await;
    refused(&server, &options(vec![url.clone()])).await;
    // The fixture restarts the server with the same arguments (and port).
    server.restart().unwrap();
    refused(&server, &options(vec![url.clone()])).await;
    connect(&with("alice", "s3cret")).await.expect("accepted");
}

#[tokio::test]
async fn a_token_is_sent_and_a_wrong_token_is_refused() {
    let server = NatsServer::start_with(&["--auth", "t0ken"]).unwrap();
    let with = |token: &str| NatsOptions {
        token: Some(token.into()),
        ..options(vec![server.url()])
    };
    connect(&with("t0ken")).await.expect("accepted");
    refused(&server, &with("other")).await;
    refused(&server, &options(vec![server.url()])).await;
}

#[tokio::test]
async fn with_several_urls_a_live_one_is_found_behind_a_dead_one() {
    let server = NatsServer::start().unwrap();
    // A port that just stopped listening (the live server holds its own, so they differ).
    let dead = NatsServer::start().unwrap().url();
    assert!(
        connect(&options(vec![dead.clone()])).await.is_err(),
        "{dead} must be dead"
    );
    // Both orders: a client that used only the first URL, or only the last, fails one.
    for urls in [vec![dead.clone(), server.url()], vec![server.url(), dead]] {
        connect(&options(urls.clone()))
            .await
            .unwrap_or_else(|e| panic!("{urls:?}: {e}"));
    }
}

#[tokio::test]
async fn credentials_in_a_url_are_refused_not_ignored_nor_shown() {
    let url = "nats://alice:s3cret@127.0.0.1:4222";
    let err = failure(&options(vec![url.into()]), "the URL holds credentials").await;
    assert!(matches!(err, NatsError::InvalidOptions(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("nats://alice:***@127.0.0.1:4222"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

/// A server config authorizing one NKey user, in `dir`.
fn nkey_config(dir: &Path, public_key: &str) -> String {
    let path = dir.join("nkey.conf");
    let text = format!("authorization {{\n  users = [ {{ nkey: \"{public_key}\" }} ]\n}}\n");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn an_nkey_seed_signs_the_servers_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let config = nkey_config(dir.path(), &user.public_key());
    let server = NatsServer::start_with(&["-c", &config]).unwrap();
    let with = |seed: String| NatsOptions {
        nkey_seed: Some(seed),
        ..options(vec![server.url()])
    };
    // A seed read from a file keeps its newline.
    let seed = user.seed().unwrap();
    connect(&with(format!("{seed}\n"))).await.expect("accepted");
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    refused(&server, &with(stranger)).await;
    refused(&server, &options(vec![server.url()])).await;
}

/// A CA and a server certificate it signed for `127.0.0.1` and `localhost`, as PEM files in
/// `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "parti test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("server.pem", cert.pem()),
        write("server-key.pem", key.serialize_pem()),
    )
}

#[tokio::test]
async fn tls_is_verified_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = NatsServer::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]).unwrap();
    let with_ca = NatsOptions {
        tls_ca_file: Some(ca.into()),
        ..options(vec![server.url()])
    };
    connect(&with_ca).await.expect("the CA verifies the server");
    // Without the CA the server's certificate cannot be verified.
    let err = failure(
        &options(vec![server.url()]),
        "the certificate is unverifiable",
    )
    .await;
    assert!(matches!(err, NatsError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&server.url()), "{err}");
}
