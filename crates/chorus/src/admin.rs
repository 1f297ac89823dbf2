//! `chorus admin <view>`: the operator's view of a running server from a shell, read from its
//! `/admin` API (docs/openapi.json) with the admin token, printed as a table (or `--json`).
//!
//! The token comes from `--token`, else `CHORUS_ADMIN_TOKEN`, else the server's token file
//! `DATA/admin-token` (`--data`, default `./chorus-data`): on the server's own machine, run as
//! its user, `chorus admin calls` needs no flag.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::Value;

/// What `chorus admin` shows.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// What to show.
    #[arg(value_enum)]
    view: View,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "CHORUS_URL")]
    url: String,
    /// The admin token [default: CHORUS_ADMIN_TOKEN, else DATA/admin-token].
    #[arg(long)]
    token: Option<String>,
    /// The server's data directory, where its admin token file is.
    #[arg(long, default_value = "./chorus-data", env = "CHORUS_DATA")]
    data: PathBuf,
    /// Users and groups: the page after this id.
    #[arg(long)]
    after: Option<i64>,
    /// How many rows at most (users, groups, webhooks: 1–1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Webhooks: only `pending`, `delivered` or `failed` ones.
    #[arg(long)]
    status: Option<String>,
    /// Print the server's JSON as it came.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum View {
    /// The Chorus processes serving this store.
    Nodes,
    /// Calls in progress.
    Calls,
    /// Users, in id order.
    Users,
    /// Groups, in id order, with their member counts.
    Groups,
    /// Webhook deliveries, the newest first.
    Webhooks,
}

impl View {
    fn path(self) -> &'static str {
        match self {
            View::Nodes => "nodes",
            View::Calls => "calls",
            View::Users => "users",
            View::Groups => "groups",
            View::Webhooks => "webhooks",
        }
    }

    /// Where the rows are in the answer, and the columns shown.
    fn table(self) -> (Option<&'static str>, &'static [&'static str]) {
        match self {
            View::Nodes => (
                None,
                &[
                    "id",
                    "node",
                    "address",
                    "version",
                    "store",
                    "started_at",
                    "sessions",
                    "calls",
                    "participants",
                    "media",
                    "last_heartbeat",
                ],
            ),
            View::Calls => (None, &["gid", "participants", "started_at", "node"]),
            View::Users => (Some("users"), &["uid", "address", "name", "active", "created_at"]),
            View::Groups => (Some("groups"), &["gid", "name", "owner", "members", "created_at"]),
            View::Webhooks => (None, &["id", "type", "url", "status", "attempts", "last_error"]),
        }
    }
}

fn token(args: &AdminArgs) -> anyhow::Result<String> {
    if let Some(t) = args.token.clone().or_else(|| std::env::var("CHORUS_ADMIN_TOKEN").ok()) {
        return Ok(t);
    }
    let path = args.data.join("admin-token");
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("no --token, no CHORUS_ADMIN_TOKEN, and {} cannot be read", path.display()))?;
    Ok(t.trim().to_string())
}

/// Runs one `chorus admin` command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(a) = args.after {
        query.push(("after", a.to_string()));
    }
    if let Some(l) = args.limit {
        query.push(("limit", l.to_string()));
    }
    if let Some(s) = &args.status {
        query.push(("status", s.clone()));
    }
    let url = format!("{}/admin/{}", args.url.trim_end_matches('/'), args.view.path());
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.with_context(|| format!("{url} did not answer JSON ({status})"))?;
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{url}: {status}: {msg}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let (key, columns) = args.view.table();
    let rows = key.map_or(&body, |k| &body[k]).as_array().cloned().unwrap_or_default();
    print!("{}", render(columns, &rows));
    if let Some(next) = body.get("next").and_then(Value::as_i64) {
        println!("(more: --after {next})");
    }
    Ok(())
}

/// A plain text table: a header, then one line per row, columns padded to their widest cell.
fn render(columns: &[&str], rows: &[Value]) -> String {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|c| cell(&r[*c])).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |vals: Vec<&str>| {
        let padded: Vec<String> = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.to_vec());
    for r in &cells {
        out += &line(r.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        out += "(none)\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_pad_columns_and_show_missing_values() {
        let rows = vec![json!({"gid": 1234567, "participants": 3}), json!({"gid": 7, "participants": 12, "x": 1})];
        let t = render(&["gid", "participants", "started_at"], &rows);
        assert_eq!(t, "gid      participants  started_at\n1234567  3             -\n7        12            -\n");
        assert_eq!(render(&["gid"], &[]), "gid\n(none)\n");
    }
}
