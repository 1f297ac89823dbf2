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
    let client = reqwest::Client::new();
    let ok: serde_json::Value = client
        .post(format!("{}/backend", s.base))
        .json(&json!({"op": "useradd", "token": token, "user": {"address": "bot1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["result"], true, "{ok}");
    let bad: serde_json::Value = client
        .post(format!("{}/backend", s.base))
        .json(&json!({"op": "useradd", "token": common::ADMIN_TOKEN, "user": {"address": "bot2"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["error"], "AUTHFAIL");
}

/// Settings come from a TOML file, are overridden by CHORUS_* variables, and bad ones stop the start with a clear message.
#[tokio::test]
async fn config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chorus.toml");
    std::fs::write(&cfg, "max_message_bytes = 100\nsends_per_second = 1000\nsend_burst = 1000\n").unwrap();
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_CONFIG", cfg.to_str().unwrap()), ("CHORUS_MAX_FRAME_BYTES", "50000")]).await;
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
    let (ok, err) = run(&["serve", "--data", data, "--listen", "not-an-address"], &[]);
    assert!(!ok && err.contains("listen"), "{err}");
}
