//! TLS to PostgreSQL (issue 11): `sslmode` in the URL and `PgOptions::ca_file`.
//!
//! Against a listener on 127.0.0.1 that answers PostgreSQL's TLS request with "no", as a server
//! without TLS does: `sslmode=require` and the verifying modes fail with a message naming the
//! fix. Against the test server, when it has `ssl = on` (Debian's PostgreSQL does, with its
//! self-signed "snakeoil" certificate for `localhost`): `require` and `verify-ca` (with the
//! server's own certificate as the CA file) connect over TLS, as `pg_stat_ssl` shows for the
//! store's own sessions, `disable` connects without; `verify-full` refuses the certificate (it
//! does not name 127.0.0.1) and, without a CA file, refuses its issuer, each with its fix.

use flow_runtime::store::{PgOptions, PgStore, RunFilter, Store, StoreError};
use flow_tests::pg::{block_on, connect, drop_schema, url};
use std::io::{Read, Write};
use std::path::PathBuf;

fn schema(name: &str) -> String {
    format!("flow_test_tls_{name}_{}", std::process::id())
}

/// `url` with `params` added to its query.
fn with(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

async fn open(url: &str, schema: &str, ca_file: Option<PathBuf>) -> Result<PgStore, StoreError> {
    let options = PgOptions {
        schema: schema.to_owned(),
        pool_size: 2,
        ca_file,
        ..PgOptions::default()
    };
    PgStore::connect_with(url, options).await
}

fn message(result: Result<PgStore, StoreError>) -> String {
    match result {
        Ok(store) => panic!("connected: {store:?}"),
        Err(err) => err.to_string(),
    }
}

/// A listener that answers every TLS request with `N` and then hangs up: a server without TLS.
fn server_without_tls() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).is_ok() {
                let _ = stream.write_all(b"N");
            }
        }
    });
    port
}

#[test]
fn sslmode_require_against_a_server_without_tls_names_the_fix() {
    let port = server_without_tls();
    let server = format!("postgres://postgres@127.0.0.1:{port}/test");
    for mode in ["require", "verify-ca", "verify-full"] {
        let err = message(block_on(open(
            &with(&server, &format!("sslmode={mode}")),
            &schema("none"),
            None,
        )));
        assert!(
            err.contains("does not accept TLS") && err.contains("sslmode=prefer"),
            "{mode}: {err}"
        );
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }
    // A mode flow does not know, and a CA file without a certificate, are refused by name
    let err = message(block_on(open(
        &with(&server, "sslmode=verify-everything"),
        &schema("none"),
        None,
    )));
    assert!(
        err.contains("verify-everything") && err.contains("verify-full"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = message(block_on(open(
        &with(&server, "sslmode=verify-full"),
        &schema("none"),
        Some(empty.clone()),
    )));
    assert!(
        err.contains(&empty.display().to_string()) && err.contains("no PEM certificate"),
        "{err}"
    );
}

/// Whether each session of `application_name` uses TLS, as the server sees it.
async fn sessions_use_tls(application: &str) -> Vec<bool> {
    let client = connect().await;
    client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn the_store_speaks_tls_as_sslmode_says_and_checks_the_certificate_when_asked() {
    let (ssl, cert_file): (String, String) = block_on(async {
        let client = connect().await;
        let row = client
            .query_one(
                "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    if ssl != "on" {
        eprintln!(
            "the test server has ssl = {ssl}: only the refusals are tested (see the test above)"
        );
        return;
    }
    let schema = schema("modes");
    let ca_file = Some(PathBuf::from(&cert_file));
    let cases = [
        ("sslmode=disable", None, false),
        ("sslmode=require", None, true),
        ("sslmode=verify-ca", ca_file.clone(), true),
        ("sslmode=require", ca_file.clone(), true),
    ];
    for (i, (mode, ca, tls)) in cases.into_iter().enumerate() {
        // A name of its own per case: the sessions of the case before may still be listed
        let app = format!("flow_test_tls_{}_{i}", std::process::id());
        let server = with(&url(), &format!("application_name={app}"));
        block_on(async {
            let store = open(&with(&server, mode), &schema, ca.clone())
                .await
                .unwrap_or_else(|e| panic!("{mode} {ca:?}: {e}"));
            store.runs(&RunFilter::default()).await.unwrap();
            let sessions = sessions_use_tls(&app).await;
            assert!(
                !sessions.is_empty() && sessions.iter().all(|s| *s == tls),
                "{mode} {ca:?}: sessions using TLS: {sessions:?}"
            );
        });
    }
    // The snakeoil certificate names `localhost`, not 127.0.0.1, and no public CA signed it
    let server = url();
    let err = message(block_on(open(
        &with(&server, "sslmode=verify-full"),
        &schema,
        ca_file,
    )));
    assert!(
        err.contains("does not name the host") && err.contains("sslmode=verify-ca"),
        "{err}"
    );
    let err = message(block_on(open(
        &with(&server, "sslmode=verify-full"),
        &schema,
        None,
    )));
    assert!(
        err.contains("not signed by a CA flow trusts") && err.contains("ca_file"),
        "{err}"
    );
    drop_schema(&schema);
}
