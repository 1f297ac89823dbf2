//! Automatic certificates (`acme_domains`) against Pebble, the ACME test CA of Let's Encrypt
//! (Debian's `pebble`), with `pebble-challtestsrv` as its DNS (every name resolves to
//! 127.0.0.1): Chorus orders a certificate for `chorus.test`, answers the CA's TLS-ALPN-01
//! challenge on its own HTTPS port, and serves the issued certificate — checked with Debian's
//! `curl` trusting only Pebble's root. Restarted with the CA gone, it serves the cached one.
//! Needs the `pebble` package (scripts/test installs it).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "chorus.test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `curl` trusting only `ca`, with `chorus.test` resolved to 127.0.0.1; (exit code, stdout).
fn curl(ca: &Path, port: u16, path: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{DOMAIN}:{port}:127.0.0.1"), &format!("https://{DOMAIN}:{port}{path}")])
        .output()
        .expect("curl (Debian's, with OpenSSL)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn chorus(data: &Path, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.arg("serve").arg("--listen").arg(format!("127.0.0.1:{port}")).arg("--data").arg(data);
    cmd.env_remove("CHORUS_CONFIG")
        .env("CHORUS_RTC_UDP_PORT", "0")
        .env("CHORUS_RTC_TCP_PORT", "0")
        .env("CHORUS_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn chorus");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let started = stdout.lines().map_while(Result::ok).any(|l| l.starts_with("Chorus listening on https://"));
    assert!(started, "chorus did not start with ACME");
    Proc(child)
}

#[test]
fn a_certificate_is_ordered_served_and_kept() {
    assert!(
        Command::new("pebble").arg("-h").output().is_ok(),
        "this test needs Debian's pebble (apt-get install pebble; scripts/test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    // Pebble's own HTTPS certificate, which Chorus is told to trust for the directory.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (pcert, pkey) = (dir.path().join("pebble-cert.pem"), dir.path().join("pebble-key.pem"));
    std::fs::write(&pcert, ck.cert.pem()).unwrap();
    std::fs::write(&pkey, ck.signing_key.serialize_pem()).unwrap();

    let (https, acme, mgmt, dns) = (free_port(), free_port(), free_port(), free_udp_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": pcert, "privateKey": pkey,
        "httpPort": free_port(), "tlsPort": https,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _dns = Proc(
        Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port()), "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv"),
    );
    let pebble = Proc(
        Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble"),
    );
    wait_listening(acme, "pebble");
    wait_listening(mgmt, "pebble's management API");

    let data = dir.path().join("data");
    let pcert_s = pcert.to_str().unwrap();
    let env =
        [("CHORUS_ACME_DOMAINS", DOMAIN), ("CHORUS_ACME_CONTACT", "ops@example.org"), ("CHORUS_ACME_CA", pcert_s)];
    let directory = format!("https://127.0.0.1:{acme}/dir");
    let mut env_all = env.to_vec();
    env_all.push(("CHORUS_ACME_DIRECTORY", &directory));
    let server = chorus(&data, https, &env_all);

    // Pebble's root (it makes a new one each run), fetched from its management API.
    let root = dir.path().join("pebble-root.pem");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert", pcert_s, "-o"])
        .arg(&root)
        .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
        .status()
        .unwrap();
    assert!(out.success(), "pebble's root");

    // The certificate is ordered, the challenge answered, and the issued certificate served.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = curl(&root, https, "/healthz");
        if (code, body.as_str()) == (0, "ok") {
            break;
        }
        assert!(Instant::now() < deadline, "no certificate from Pebble after 60 s (curl exit {code})");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Only Pebble's root makes it trusted: the public roots do not.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--resolve", &format!("{DOMAIN}:{https}:127.0.0.1")])
        .arg(format!("https://{DOMAIN}:{https}/healthz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(60), "curl without Pebble's root must not trust the certificate");

    // The account and certificate are kept privately under DATA/acme.
    use std::os::unix::fs::PermissionsExt;
    let acme_dir = data.join("acme");
    assert_eq!(std::fs::metadata(&acme_dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(std::fs::read_dir(&acme_dir).unwrap().count() >= 2, "account and certificate cached");

    // Restarted with the CA gone, Chorus serves the cached certificate at once.
    drop(server);
    drop(pebble);
    let _again = chorus(&data, https, &env_all);
    let (code, body) = curl(&root, https, "/healthz");
    assert_eq!((code, body.as_str()), (0, "ok"), "the cached certificate after a restart");
}

/// Bad ACME settings stop the start with a clear message.
#[test]
fn bad_acme_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (env, want) in [
        (vec![("CHORUS_ACME_DOMAINS", "localhost")], "is not a DNS name"),
        (vec![("CHORUS_ACME_DOMAINS", DOMAIN), ("CHORUS_ACME_DIRECTORY", "http://ca.example/dir")], "https://"),
        (vec![("CHORUS_ACME_DOMAINS", DOMAIN), ("CHORUS_ACME_CONTACT", "nobody")], "e-mail"),
        (
            vec![("CHORUS_ACME_DOMAINS", DOMAIN), ("CHORUS_TLS_CERT", "/x"), ("CHORUS_TLS_KEY", "/y")],
            "exclude each other",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data").arg(dir.path());
        cmd.env_remove("CHORUS_CONFIG");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{env:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{env:?}: {err}");
    }
}
