//! Built-in HTTPS (`tls_cert`, `tls_key`) against the real `chorus serve`, checked with Debian's
//! `curl` (OpenSSL, a TLS stack we did not choose): the web app, the REST API and a WebSocket
//! upgrade are served over TLS with a test certificate, plain HTTP on that port gets nothing, and
//! bad certificate settings stop the start with a clear message.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn chorus(data: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data").arg(data);
    cmd.env_remove("CHORUS_CONFIG")
        .env("CHORUS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CHORUS_RTC_UDP_PORT", "0")
        .env("CHORUS_RTC_TCP_PORT", "0")
        .env("CHORUS_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the server; returns it and the URL it prints.
fn start(data: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = chorus(data, env).stdout(Stdio::piped()).spawn().expect("spawn chorus");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("Chorus listening on ").map(|u| u.trim().to_string()));
    match url {
        Some(url) => (child, url),
        None => {
            let _ = child.wait();
            panic!("the server did not start");
        }
    }
}

/// `curl` with the test certificate as the only trusted root; returns (exit code, stdout).
fn curl(cert: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(cert)
        .args(args)
        .output()
        .expect("curl (Debian's, with OpenSSL)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_app_the_api_and_websockets_are_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (mut child, base) = start(&dir.path().join("data"), &[("CHORUS_TLS_CERT", cert_s), ("CHORUS_TLS_KEY", key_s)]);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let (code, body) = curl(&cert, &[&format!("{base}/healthz")]);
    assert_eq!((code, body.as_str()), (0, "ok"));
    let (code, body) = curl(&cert, &[&format!("{base}/")]);
    assert_eq!(code, 0);
    assert!(body.contains("<html") || body.contains("<!doctype"), "the web app: {body:.200}");
    let (code, body) = curl(&cert, &[&format!("{base}/v1/openapi.json")]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["openapi"].is_string());

    // A user and its token through the backend API, then the WebSocket upgrade with it.
    let (code, body) = curl(
        &cert,
        &[
            "-H",
            "content-type: application/json",
            "--data",
            &format!(
                r#"{{"op":"useradd","token":"{ADMIN_TOKEN}","user":{{"address":"ann","name":"Ann","token":{{"appid":"x"}}}}}}"#
            ),
            &format!("{base}/backend"),
        ],
    );
    assert_eq!(code, 0, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["user"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {body}"))
        .to_string();
    let (_, head) = curl(
        &cert,
        &[
            "-i",
            "--http1.1",
            "--max-time",
            "2",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}/v1/ws"),
        ],
    );
    assert!(head.starts_with("HTTP/1.1 101"), "WebSocket upgrade over TLS: {head:.300}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");

    // A file over TLS (which never uses the plain-HTTP sendfile path): uploaded with tus, then
    // read whole and in a range, byte for byte.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let auth = format!("Authorization: Bearer {token}");
    let tus = ["-H", "Tus-Resumable: 1.0.0", "-H", &auth];
    let len = format!("Upload-Length: {}", data.len());
    let (code, head) = curl(
        &cert,
        &[&tus[..], &["-D", "-", "-o", "/dev/null", "-X", "POST", "-H", &len, &format!("{base}/v1/uploads")]].concat(),
    );
    assert_eq!(code, 0);
    let location = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("location: ").map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("a Location: {head}"));
    let id = location.rsplit('/').next().unwrap().to_string();
    let body = format!("@{}", src.display());
    let patch = [
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/offset+octet-stream",
        "-H",
        "Upload-Offset: 0",
        "--data-binary",
        &body,
    ];
    let (code, status) = curl(&cert, &[&tus[..], &patch[..], &[&format!("{base}/v1/uploads/{id}")]].concat());
    assert_eq!((code, status.as_str()), (0, "204"));
    let out = dir.path().join("out.bin");
    let content = format!("{base}/v1/files/{id}/content");
    let (code, _) = curl(&cert, &["-H", &auth, "-o", out.to_str().unwrap(), &content]);
    assert_eq!(code, 0);
    assert!(std::fs::read(&out).unwrap() == data, "the whole file over TLS");
    let (code, status) =
        curl(&cert, &["-H", &auth, "-r", "1000-2099999", "-w", "%{http_code}", "-o", out.to_str().unwrap(), &content]);
    assert_eq!((code, status.as_str()), (0, "206"));
    assert!(std::fs::read(&out).unwrap() == data[1000..2_100_000], "a range over TLS");

    // Plain HTTP on the TLS port: no answer. An untrusted certificate: curl refuses.
    let plain = base.replacen("https://", "http://", 1);
    let (code, body) = curl(&cert, &[&format!("{plain}/healthz")]);
    assert!(code != 0 && body.is_empty(), "plain HTTP got {code} {body:?}");
    let out = Command::new("curl").args(["-sS", "--max-time", "5", &format!("{base}/healthz")]).output().unwrap();
    assert_eq!(out.status.code(), Some(60), "an unknown CA is refused by curl (exit 60)");

    // A client that opens a connection and never handshakes holds it only for the idle timeout
    // (default 60 s, not waited for here) and does not block others.
    let _idle = std::net::TcpStream::connect(base.trim_start_matches("https://")).unwrap();
    let (code, body) = curl(&cert, &[&format!("{base}/healthz")]);
    assert_eq!((code, body.as_str()), (0, "ok"), "served beside a silent connection");

    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_certificate_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let missing = dir.path().join("missing.pem");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("CHORUS_TLS_CERT", cert_s)], "tls_cert and tls_key go together"),
        (&[("CHORUS_TLS_CERT", missing.to_str().unwrap()), ("CHORUS_TLS_KEY", key_s)], "tls_cert"),
        (&[("CHORUS_TLS_CERT", key_s), ("CHORUS_TLS_KEY", key_s)], "no certificate"),
        (&[("CHORUS_TLS_CERT", cert_s), ("CHORUS_TLS_KEY", other_key.to_str().unwrap())], "does the key match"),
    ];
    for (env, expected) in cases {
        let out = chorus(&dir.path().join("data"), env).stdout(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}
