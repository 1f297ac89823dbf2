//! The media load: tus uploads (a `POST /v1/uploads` creation, then one `PATCH` with the whole
//! body, as a tus client with an unlimited chunk size sends it) and concurrent random range
//! reads, each client on its own keep-alive connection, every answer checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::msg::hist::Hist;

/// `n` random bytes.
pub fn random_bytes(n: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut v[..]);
    Bytes::from(v)
}

/// Uploads `body` to `base` over tus as the holder of `token`; returns the file id.
pub async fn tus_upload(http: &reqwest::Client, base: &str, token: &str, body: Bytes) -> anyhow::Result<String> {
    let len = body.len();
    let created = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", len)
        .send()
        .await?;
    if created.status() != reqwest::StatusCode::CREATED {
        bail!("tus creation answered {}: {}", created.status(), created.text().await.unwrap_or_default());
    }
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("tus creation without Location"))?
        .to_string();
    let id = location.rsplit('/').next().unwrap_or_default().to_string();
    let url = if location.starts_with("http") { location } else { format!("{base}{location}") };
    let patched = http
        .patch(url)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", 0)
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await?;
    let offset = patched.headers().get("upload-offset").and_then(|v| v.to_str().ok()).map(str::to_string);
    if patched.status() != reqwest::StatusCode::NO_CONTENT || offset.as_deref() != Some(&len.to_string()) {
        bail!("tus PATCH answered {} with Upload-Offset {offset:?} (want 204 and {len})", patched.status());
    }
    Ok(id)
}

/// What the range readers do.
#[derive(Debug, Clone)]
pub struct ReadLoad {
    /// The URL of the file (signed for Chorus, plain for nginx).
    pub url: String,
    /// The file's bytes, to check answers against.
    pub data: Bytes,
    /// Concurrent clients, each on its own connection.
    pub clients: usize,
    /// Bytes per range.
    pub range: usize,
    /// Every how many answers a client compares the bytes with the original (1: all).
    pub verify_every: u64,
    /// Time the clients read before the window opens.
    pub warmup: Duration,
    /// Length of the measured window.
    pub duration: Duration,
}

/// What the readers saw in the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadTotals {
    /// Requests that started and ended in the window.
    pub requests: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// Answers checked for status, Content-Range and length (the whole run, warm-up included).
    pub checked: u64,
    /// Answers whose bytes were compared with the original (the whole run).
    pub compared: u64,
    /// Request → last body byte, µs.
    #[serde(skip)]
    pub latency: Hist,
}

/// Runs the readers from now: `warmup`, then the window (which the caller measures the server
/// over: it opens at the returned instant), then stops. Fails at the first wrong answer.
pub async fn range_reads(load: &ReadLoad, window_open: Instant) -> anyhow::Result<ReadTotals> {
    let window_close = window_open + load.duration;
    let load = Arc::new(load.clone());
    let mut tasks = Vec::new();
    for c in 0..load.clients {
        let load = load.clone();
        tasks.push(tokio::spawn(async move { reader(&load, c as u64, window_open, window_close).await }));
    }
    let mut totals = ReadTotals::default();
    for t in tasks {
        let r = t.await??;
        totals.requests += r.requests;
        totals.bytes += r.bytes;
        totals.checked += r.checked;
        totals.compared += r.compared;
        totals.latency.merge(&r.latency);
    }
    Ok(totals)
}

async fn reader(load: &ReadLoad, seed: u64, open: Instant, close: Instant) -> anyhow::Result<ReadTotals> {
    // One client each: its own connection, kept alive.
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(1).build()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d65_6469_6100 + seed);
    let size = load.data.len();
    let len = load.range.min(size);
    let mut t = ReadTotals::default();
    let mut n = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= close {
            break;
        }
        let start = rng.gen_range(0..=size - len);
        let end = start + len - 1;
        let compare = n.is_multiple_of(load.verify_every);
        n += 1;
        let mut resp = http
            .get(&load.url)
            .header("Range", format!("bytes={start}-{end}"))
            .send()
            .await
            .with_context(|| format!("GET bytes={start}-{end}"))?;
        let want_range = format!("bytes {start}-{end}/{size}");
        let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
        if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT || range != want_range {
            bail!(
                "bytes={start}-{end} answered {} with Content-Range {range:?} (want 206 and {want_range:?})",
                resp.status()
            );
        }
        if resp.content_length() != Some(len as u64) {
            bail!("bytes={start}-{end} answered Content-Length {:?} (want {len})", resp.content_length());
        }
        let mut got = 0usize;
        while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading bytes={start}-{end}"))? {
            if got + chunk.len() > len {
                bail!("bytes={start}-{end}: more than {len} bytes in the body");
            }
            if compare && chunk[..] != load.data[start + got..start + got + chunk.len()] {
                bail!("bytes={start}-{end}: wrong bytes at offset {} of the range", got);
            }
            got += chunk.len();
        }
        if got != len {
            bail!("bytes={start}-{end}: body of {got} bytes (want {len})");
        }
        let t1 = Instant::now();
        t.checked += 1;
        t.compared += u64::from(compare);
        if t0 >= open && t1 <= close {
            t.requests += 1;
            t.bytes += len as u64;
            t.latency.record(t1.duration_since(t0).as_micros() as u64);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-file HTTP server answering ranges of `data` after `spoil` has had its way with
    /// (status, Content-Range, body).
    async fn server(data: Bytes, spoil: fn(&mut String, &mut Vec<u8>)) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let data = data.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut b = [0u8; 1024];
                            match sock.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&b[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        buf.drain(..end);
                        let range = head.split("range: bytes=").nth(1).unwrap().lines().next().unwrap();
                        let (a, b) = range.trim().split_once('-').unwrap();
                        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                        let mut status = format!("206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}", data.len());
                        let mut body = data[a..=b].to_vec();
                        spoil(&mut status, &mut body);
                        let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n", body.len());
                        if sock.write_all(head.as_bytes()).await.is_err() || sock.write_all(&body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/f")
    }

    fn load(url: String, data: Bytes) -> ReadLoad {
        ReadLoad {
            url,
            data,
            clients: 2,
            range: 1000,
            verify_every: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn right_answers_pass_and_wrong_ones_fail_the_run() {
        let data = random_bytes(50_000, 7);
        let good = server(data.clone(), |_, _| {}).await;
        let t = range_reads(&load(good, data.clone()), Instant::now()).await.unwrap();
        assert!(t.requests > 0 && t.compared == t.checked && t.bytes == t.requests * 1000, "{t:?}");

        let flipped = server(data.clone(), |_, body| body[500] ^= 1).await;
        let e = range_reads(&load(flipped, data.clone()), Instant::now()).await.unwrap_err();
        assert!(e.to_string().contains("wrong bytes"), "{e}");

        let whole = server(data.clone(), |status, _| *status = status.replace("206 Partial Content", "200 OK")).await;
        let e = range_reads(&load(whole, data.clone()), Instant::now()).await.unwrap_err();
        assert!(e.to_string().contains("answered 200"), "{e}");

        let shifted = server(data.clone(), |status, _| *status = status.replace("bytes ", "bytes 1")).await;
        let e = range_reads(&load(shifted, data.clone()), Instant::now()).await.unwrap_err();
        assert!(e.to_string().contains("Content-Range"), "{e}");

        let short = server(data.clone(), |_, body| body.truncate(999)).await;
        let e = range_reads(&load(short, data), Instant::now()).await.unwrap_err();
        assert!(e.to_string().contains("Content-Length"), "{e}");
    }
}
