//! The `parti` binary passes its NATS credentials on: `status --user --password` reads a
//! server that demands them (an empty one: "no buckets yet", exit 0), a missing or wrong
//! password gives one `error:` line saying authorization failed (exit 1), `--nats` takes a
//! comma-separated list of URLs, and no secret is ever printed.

use parti::testing::NatsServer;
use std::time::Duration;

mod cli_support;
use cli_support::text;

/// Far longer than `parti status` takes against a loopback server; past it, it hung.
const DEADLINE: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> std::process::Output {
    cli_support::run(args, DEADLINE)
}

/// A server demanding user `a`, password `s3cret`.
fn server() -> NatsServer {
    NatsServer::start_with(&["--user", "a", "--pass", "s3cret"]).expect("start nats-server")
}

/// Exit 1, and one `error:` line that says authorization failed at `url`.
fn assert_refused(args: &[&str], url: &str) {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: authorization failed at NATS {url}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret") && !stderr.contains("wrong"),
        "{stderr}"
    );
}

#[test]
fn status_authenticates_with_user_and_password() {
    let server = server();
    let url = server.url();
    let out = run(&[
        "status",
        "--nats",
        &url,
        "--user",
        "a",
        "--password",
        "s3cret",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("fleet       {url} prefix parti")),
        "{stdout}"
    );
    assert!(stdout.contains("no buckets yet"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");

    assert_refused(&["status", "--nats", &url, "--user", "a"], &url);
    assert_refused(
        &[
            "status",
            "--nats",
            &url,
            "--user",
            "a",
            "--password",
            "wrong",
        ],
        &url,
    );
    assert_refused(&["status", "--nats", &url], &url);
}

#[test]
fn nats_takes_a_comma_separated_list_and_never_prints_a_password_in_a_url() {
    let server = server();
    // A port that just stopped listening, listed first.
    let dead = NatsServer::start().expect("start nats-server").url();
    let list = format!("{dead},{}", server.url());
    let out = run(&[
        "status",
        "--nats",
        &list,
        "--user",
        "a",
        "--password",
        "s3cret",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(&list), "{stdout}");

    // Credentials written in a URL are not used by the client: a usage error that masks them.
    let inline = server.url().replace("nats://", "nats://a:s3cret@");
    let out = run(&["status", "--nats", &inline]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let masked = server.url().replace("nats://", "nats://a:***@");
    assert!(
        stderr.contains(&masked) && stderr.contains("--user"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
