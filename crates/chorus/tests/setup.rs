//! Starting the server: config file, environment, admin token, bad settings.

mod common;

use std::process::Command;

use common::{Backend, Server};
use serde_json::json;

/// Without a configured admin token one is generated, stored under DATA (0600) and works for /backend.
#[tokio::test]
async fn admin_token_is_generated_once() {
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_ADMIN_TOKEN", "")]).await;
    let path = s.data.path().join("admin-token");
    let token = std::fs::read_to_string(&path).expect("admin token stored under DATA");
    assert!(token.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let ok = s.backend(json!({"op": "useradd", "token": token, "user": {"address": "bot1"}})).await;
    assert_eq!(ok["result"], true, "{ok}");
    let bad = s.backend(json!({"op": "useradd", "token": common::ADMIN_TOKEN, "user": {"address": "bot2"}})).await;
    assert_eq!(bad["error"], "AUTHFAIL");
}

/// Settings come from a TOML file, are overridden by CHORUS_* variables, and bad ones stop the start with a clear message.
#[tokio::test]
async fn config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chorus.toml");
    std::fs::write(&cfg, "max_message_bytes = 100\nsends_per_second = 1000\nsend_burst = 1000\n").unwrap();
    let s = Server::start_with(
        Backend::Sqlite,
        &[("CHORUS_CONFIG", cfg.to_str().unwrap()), ("CHORUS_MAX_FRAME_BYTES", "50000")],
    )
    .await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, _) = s.login("b@example.org", "B").await;
    let (mut ca, _) = s.connect(&ha).await;
    let f = ca.send_text(Some(&bb.user.address), None, "x", &"y".repeat(200)).await.unwrap();
    assert!(matches!(f, chorus_proto::ws::ServerFrame::Error { code: chorus_proto::ErrorCode::TooLarge, .. }), "{f:?}");
    drop(s);

    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chorus"));
        c.args(args).env_remove("CHORUS_CONFIG").env_remove("CHORUS_ADMIN_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let (ok, err) = run(&["serve", "--config", cfg.to_str().unwrap(), "--data", data], &[]);
    assert!(!ok && err.contains("no_such_setting"), "{err}");
    let (ok, err) = run(&["serve", "--config", "/nonexistent/chorus.toml", "--data", data], &[]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, err) = run(&["serve", "--database", "mysql://x", "--data", data], &[]);
    assert!(!ok && err.contains("postgres://"), "{err}");
    let (ok, err) = run(&["serve", "--data", data], &[("CHORUS_MAX_MESSAGE_BYTES", "lots")]);
    assert!(!ok && err.to_lowercase().contains("max_message_bytes"), "{err}");
    let (ok, err) = run(&["serve", "--data", data], &[("CHORUS_SQLITE_SYNCHRONOUS", "sometimes")]);
    assert!(!ok && err.contains("sqlite_synchronous"), "{err}");
    let (ok, err) = run(&["serve", "--data", data, "--listen", "not-an-address"], &[]);
    assert!(!ok && err.contains("listen"), "{err}");
}

/// A minimal SMTP receiver (the peer lettre talks to): collects each message's DATA.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let cmd = line.to_ascii_uppercase();
                    if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.unwrap();
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go on\r\n").await.unwrap();
                        let mut body = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            body.push_str(&l);
                            body.push('\n');
                        }
                        let _ = tx.send(body);
                        w.write_all(b"250 queued\r\n").await.unwrap();
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, rx)
}

/// With SMTP configured, the login code goes out by SMTP (not to the outbox) and works.
#[tokio::test]
async fn login_code_by_smtp() {
    let (port, mut mails) = smtp_sink().await;
    let port = port.to_string();
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            ("CHORUS_SMTP_HOST", "127.0.0.1"),
            ("CHORUS_SMTP_PORT", &port),
            ("CHORUS_SMTP_SECURITY", "none"),
            ("CHORUS_MAIL_FROM", "Chorus <noreply@chorus.test>"),
        ],
    )
    .await;
    let http = s.http();
    http.request_code("smtp@example.org").await.unwrap();
    let mail = tokio::time::timeout(std::time::Duration::from_secs(10), mails.recv()).await.unwrap().unwrap();
    assert!(mail.contains("To: smtp@example.org"), "{mail}");
    assert!(mail.contains("From: Chorus <noreply@chorus.test>"), "{mail}");
    let code: String = mail.split("login code is ").nth(1).unwrap().chars().take(6).collect();
    let sess = http.verify("smtp@example.org", &code, Some("Smtp")).await.unwrap();
    assert_eq!(sess.user.name, "Smtp");
    let in_outbox = std::fs::read_dir(s.outbox()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(in_outbox, 0, "mail went by SMTP, not to the outbox");
}
