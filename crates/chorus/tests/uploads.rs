//! Uploads (tus 1.0) and files (ranges, signed URLs) against a real `chorus serve`, on SQLite
//! and PostgreSQL; local disk and S3 (moto, from PyPI) storage; tuspy (PyPI) and curl as
//! clients we did not write.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, Server};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;

/// Test data: 1 MiB blocks, each a fixed random block with its index written over its first
/// eight bytes, so every block differs and any byte is cheap to make again.
struct Data {
    base: Vec<u8>,
}

impl Data {
    fn new(seed: u64) -> Data {
        let mut x = seed | 1;
        let base = (0..MIB)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Data { base }
    }

    /// Bytes `[at, at + len)`.
    fn bytes(&self, at: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = at;
        while pos < at + len {
            let block = pos / MIB;
            let mut b = self.base.clone();
            b[..8].copy_from_slice(&block.to_le_bytes());
            let from = (pos % MIB) as usize;
            let to = ((at + len - block * MIB).min(MIB)) as usize;
            out.extend_from_slice(&b[from..to]);
            pos = block * MIB + to as u64;
        }
        out
    }

    fn sha256(&self, len: u64) -> Vec<u8> {
        let mut h = Sha256::new();
        let mut at = 0;
        while at < len {
            let n = MIB.min(len - at);
            h.update(self.bytes(at, n));
            at += n;
        }
        h.finalize().to_vec()
    }
}

/// A tus client for the tests: creation and HEAD through reqwest, PATCH over a raw socket
/// (streamed from [`Data`], and cut when asked).
struct Tus {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Tus {
    fn new(server: &Server, token: &str) -> Tus {
        Tus { base: server.base.clone(), token: token.to_string(), http: reqwest::Client::new() }
    }

    async fn post(&self, length: u64, name: &str) -> reqwest::Response {
        use base64::Engine as _;
        let meta = format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name));
        self.http
            .post(format!("{}/v1/uploads", self.base))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", meta)
            .send()
            .await
            .expect("POST /v1/uploads")
    }

    /// Creates an upload; returns its id.
    async fn create(&self, length: u64, name: &str) -> String {
        let r = self.post(length, name).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        loc.strip_prefix("/v1/uploads/").expect("Location is /v1/uploads/{id}").to_string()
    }

    async fn head(&self, id: &str) -> reqwest::Response {
        self.http
            .head(format!("{}/v1/uploads/{id}", self.base))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("HEAD")
    }

    async fn delete(&self, id: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}/v1/uploads/{id}", self.base))
            .bearer_auth(&self.token)
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await
            .expect("DELETE")
    }

    async fn offset(&self, id: &str) -> u64 {
        let r = self.head(id).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
    }

    /// PATCHes `data[offset .. offset + len]` at `offset` over a raw socket. With `cut`, the
    /// connection is closed after that many body bytes and `None` comes back; else the
    /// answer's status and headers.
    async fn patch(&self, id: &str, data: &Data, offset: u64, len: u64, cut: Option<u64>) -> Option<(u16, String)> {
        let addr = self.base.strip_prefix("http://").unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "PATCH /v1/uploads/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {len}\r\n\
             Connection: close\r\n\r\n",
            self.token
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let send = cut.unwrap_or(len);
        let mut at = offset;
        while at < offset + send {
            let n = MIB.min(offset + send - at);
            if s.write_all(&data.bytes(at, n)).await.is_err() {
                break; // refused early: the answer is waiting
            }
            at += n;
        }
        if cut.is_some() {
            s.shutdown().await.ok();
            drop(s);
            return None;
        }
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok();
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Some((status, text))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("GET")
    }
}

/// The `upload-offset` of a raw answer.
fn offset_of(answer: &str) -> Option<u64> {
    answer
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("upload-offset: ").map(|v| v.trim().parse().ok()))?
}

/// SHA-256 of a body, read as a stream.
async fn sha256_of(mut r: reqwest::Response) -> (Vec<u8>, u64) {
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(chunk) = r.chunk().await.expect("body") {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (h.finalize().to_vec(), n)
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("JSON error body");
    v["error"]["code"].as_str().expect("error.code").to_string()
}

// ------------------------------------------------------------------ resume

/// A 300 MiB upload cut in the middle of a PATCH resumes from the offset HEAD reports, then
/// goes up in 100 MiB chunks; the bytes fetched back hash to the original's SHA-256.
async fn resume_after_cut(b: Backend) {
    let server = Server::start(b).await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let tus = Tus::new(&server, &sess.token);
    let data = Data::new(300);
    let size = 300 * MIB;
    let id = tus.create(size, "big.bin").await;

    let cut = 120 * MIB + 12_345;
    assert!(tus.patch(&id, &data, 0, size, Some(cut)).await.is_none());
    let resumed = tus.offset(&id).await;
    assert!(resumed > 0 && resumed <= cut, "HEAD after the cut reports {resumed} of {cut} bytes sent");

    // A PATCH at any other offset is refused, and stores nothing.
    let (status, _) = tus.patch(&id, &data, resumed + 1, MIB, None).await.unwrap();
    assert_eq!(status, 409);
    assert_eq!(tus.offset(&id).await, resumed);

    let mut at = resumed;
    while at < size {
        let n = (100 * MIB).min(size - at);
        let (status, answer) = tus.patch(&id, &data, at, n, None).await.unwrap();
        assert_eq!(status, 204, "{answer}");
        assert_eq!(offset_of(&answer), Some(at + n));
        at += n;
    }
    assert_eq!(tus.offset(&id).await, size);
    // On disk: one file per stored part (the cut one, then one per PATCH of 100 MiB at most),
    // named by its start offset; no staging file of the cut request is left.
    let parts = files_under(&server.data.path().join("media/uploads").join(&id));
    let mut names: Vec<String> = parts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names.len() as u64, 1 + (size - resumed).div_ceil(100 * MIB), "{names:?}");
    assert_eq!(names[0], format!("{:020}", 0));
    assert_eq!(names[1], format!("{resumed:020}"));

    let meta: serde_json::Value = tus.get(&format!("/v1/files/{id}"), &[]).await.json().await.unwrap();
    assert_eq!(meta["size"], size);
    assert_eq!(meta["name"], "big.bin");
    assert_eq!(meta["uploader"], sess.user.address.as_str());
    let r = tus.get(&format!("/v1/files/{id}/content"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (sum, n) = sha256_of(r).await;
    assert_eq!(n, size);
    assert_eq!(hex::encode(sum), hex::encode(data.sha256(size)), "the stored bytes are the original's");

    // A range across the cut (two stored parts) is the original's bytes.
    let range = format!("bytes={}-{}", resumed - 10, resumed + 9);
    let r = tus.get(&format!("/v1/files/{id}/content"), &[("range", &range)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data.bytes(resumed - 10, 20));
}

// ------------------------------------------------------------------ memory

/// The server's resident memory grows by less than 64 MiB while a 1 GiB upload streams in.
async fn memory_bounded(b: Backend) {
    let server = Server::start(b).await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let tus = Tus::new(&server, &sess.token);
    let data = Data::new(1);
    let size = 1024 * MIB;
    // Warm up the paths (first request, first part) before the baseline.
    let warm = tus.create(4 * MIB, "warm.bin").await;
    assert_eq!(tus.patch(&warm, &data, 0, 4 * MIB, None).await.unwrap().0, 204);
    let id = tus.create(size, "huge.bin").await;
    let pid = server.pid();
    let before = vm_rss_kib(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(vm_rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        })
    };
    // One PATCH of 1 GiB: the same block again and again is enough here.
    let addr = server.base.strip_prefix("http://").unwrap().to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH /v1/uploads/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {size}\r\n\
         Connection: close\r\n\r\n",
        sess.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..size / MIB {
        s.write_all(&data.base).await.unwrap();
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert_eq!(tus.offset(&id).await, size);
    let grew_mib = max.saturating_sub(before) / 1024;
    eprintln!("server RSS {} MiB before, {} MiB at most during the 1 GiB upload", before / 1024, max / 1024);
    assert!(grew_mib < 64, "the server's RSS grew by {grew_mib} MiB during a 1 GiB upload");
    // Termination deletes the bytes.
    let r = tus.delete(&id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(tus.head(&id).await.status(), StatusCode::NOT_FOUND);
    let left = files_under(&server.data.path().join("media/uploads"));
    assert!(left.iter().all(|p| p.to_string_lossy().contains(&warm)), "deleted bytes remain: {left:?}");
}

// ------------------------------------------------------------------ limits

/// Over the size limit, the quota or the unfinished-upload count: refused with a JSON error
/// before anything is stored; bad tus requests get tus's statuses.
async fn limits(b: Backend) {
    let server = Server::start_with(
        b,
        &[
            ("CHORUS_MAX_UPLOAD_BYTES", "10485760"),
            ("CHORUS_UPLOAD_QUOTA_BYTES", "15728640"),
            ("CHORUS_MAX_UNFINISHED_UPLOADS", "2"),
        ],
    )
    .await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let tus = Tus::new(&server, &sess.token);
    let media = server.data.path().join("media");
    let data = Data::new(7);

    let opts = tus.http.request(reqwest::Method::OPTIONS, format!("{}/v1/uploads", server.base)).send().await.unwrap();
    assert_eq!(opts.status(), StatusCode::NO_CONTENT);
    assert_eq!(opts.headers()["tus-version"], "1.0.0");
    assert_eq!(opts.headers()["tus-max-size"], "10485760");
    let ext = opts.headers()["tus-extension"].to_str().unwrap();
    for e in ["creation", "creation-with-upload", "termination", "expiration", "checksum"] {
        assert!(ext.split(',').any(|x| x == e), "{e} in {ext}");
    }

    let r = tus.post(10 * MIB + 1, "big").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "too_large");

    let first = tus.create(8 * MIB, "a").await;
    let r = tus.post(8 * MIB, "b").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "8 + 8 MiB is over the 15 MiB quota");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("quota"), "{body}");
    let second = tus.create(MIB, "c").await;
    let r = tus.post(MIB, "d").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a third unfinished upload");
    assert!(files_under(&media).is_empty(), "refused uploads left files: {:?}", files_under(&media));
    let r = tus.delete(&second).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A body longer than the upload: 413 before a byte is stored.
    let (status, answer) = tus.patch(&first, &data, 0, 8 * MIB + 1, None).await.unwrap();
    assert_eq!(status, 413, "{answer}");
    assert_eq!(tus.offset(&first).await, 0);
    assert!(files_under(&media).is_empty(), "{:?}", files_under(&media));

    // Creation-with-upload of more bytes than announced: refused whole, nothing kept.
    let r = tus
        .http
        .post(format!("{}/v1/uploads", server.base))
        .bearer_auth(&sess.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1u8; 11])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(files_under(&media).is_empty(), "{:?}", files_under(&media));

    // A checksum that does not match: 460, nothing kept; the right one: stored.
    use base64::Engine as _;
    let body = data.bytes(0, MIB);
    let good = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
    let patch = |sum: String| {
        tus.http
            .patch(format!("{}/v1/uploads/{first}", server.base))
            .bearer_auth(&sess.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", "0")
            .header("Upload-Checksum", format!("sha256 {sum}"))
            .body(body.clone())
            .send()
    };
    let bad = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"));
    assert_eq!(patch(bad).await.unwrap().status().as_u16(), 460);
    assert_eq!(tus.offset(&first).await, 0);
    assert!(files_under(&media).is_empty(), "a refused checksum left {:?}", files_under(&media));
    assert_eq!(patch(good).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(tus.offset(&first).await, MIB);

    // An empty file is complete at creation.
    let empty = tus.create(0, "empty.txt").await;
    assert_eq!(tus.offset(&empty).await, 0);
    let r = tus.get(&format!("/v1/files/{empty}/content"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());

    // Bad requests.
    let no_token = tus.http.post(format!("{}/v1/uploads", server.base)).header("Tus-Resumable", "1.0.0");
    let r = no_token.header("Upload-Length", "5").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "unauthorized");
    let r = tus
        .http
        .post(format!("{}/v1/uploads", server.base))
        .bearer_auth(&sess.token)
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED, "no Tus-Resumable");
    let r = tus
        .http
        .patch(format!("{}/v1/uploads/{first}", server.base))
        .bearer_auth(&sess.token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", MIB.to_string())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

// ------------------------------------------------------------------ expiry

/// An unfinished upload is gone after its expiry: HEAD 404, its row and its bytes deleted.
async fn expiry(b: Backend) {
    let server = Server::start_with(b, &[("CHORUS_UPLOAD_EXPIRY_SECS", "2"), ("CHORUS_UPLOAD_SWEEP_SECS", "1")]).await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let tus = Tus::new(&server, &sess.token);
    let data = Data::new(3);
    let id = tus.create(4 * MIB, "partial.bin").await;
    let r = tus.head(&id).await;
    assert!(r.headers().contains_key("upload-expires"), "expiration: Upload-Expires is announced");
    assert_eq!(tus.patch(&id, &data, 0, MIB, None).await.unwrap().0, 204);
    let media = server.data.path().join("media");
    assert!(!files_under(&media).is_empty(), "the part is on disk");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let gone = files_under(&media).is_empty();
        let rows = {
            use sqlx::Connection as _;
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&server.db_url()).await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads").fetch_one(&mut c).await.unwrap();
            n
        };
        if gone && rows == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the expired upload is still there (files gone: {gone}, rows: {rows})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(tus.head(&id).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = tus.patch(&id, &data, MIB, MIB, None).await.unwrap();
    assert_eq!(status, 404);
}

/// Deleting a user (Mesibo's `/backend` `deluser`) deletes their uploads' rows; the sweep
/// then deletes their bytes. Another user's file stays.
async fn deleted_user(b: Backend) {
    let server = Server::start_with(b, &[("CHORUS_UPLOAD_SWEEP_SECS", "1")]).await;
    let (ann, _) = server.login("ann@example.com", "Ann").await;
    let (bob, _) = server.login("bob@example.com", "Bob").await;
    let data = Data::new(4);
    let mut kept = Vec::new();
    for (sess, name) in [(&ann, "ann.bin"), (&bob, "bob.bin")] {
        let tus = Tus::new(&server, &sess.token);
        let id = tus.create(MIB, name).await;
        assert_eq!(tus.patch(&id, &data, 0, MIB, None).await.unwrap().0, 204);
        kept.push((id, tus));
    }
    let (bob_file, bob_tus) = kept.pop().unwrap();
    // Ann's file read through a signed URL (the server keeps finished files' rows in memory).
    let (ann_file, ann_tus) = kept.pop().unwrap();
    let r = ann_tus.http.post(format!("{}/v1/files/{ann_file}/url", server.base)).bearer_auth(&ann.token).send().await;
    let signed: serde_json::Value = r.unwrap().json().await.unwrap();
    let ann_url = format!("{}{}", server.base, signed["url"].as_str().unwrap());
    let r = reqwest::get(&ann_url).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len() as u64, MIB);
    let uploads = server.data.path().join("media/uploads");
    assert_eq!(files_under(&uploads).len(), 2);
    let r = server
        .backend(
            serde_json::json!({"op": "deluser", "token": common::ADMIN_TOKEN, "user": {"address": ann.user.address}}),
        )
        .await;
    assert_eq!(r["result"], true, "{r}");
    let r = reqwest::get(&ann_url).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a deleted account's file is gone at once, signed URL or not");
    let deadline = Instant::now() + Duration::from_secs(15);
    while files_under(&uploads).len() != 1 {
        assert!(Instant::now() < deadline, "the deleted user's bytes remain: {:?}", files_under(&uploads));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(files_under(&uploads)[0].to_string_lossy().contains(&bob_file));
    let r = bob_tus.get(&format!("/v1/files/{bob_file}/content"), &[]).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data.bytes(0, MIB), "the other user's file is intact");
}

// ------------------------------------------------------------------ files

/// Metadata, ranges (206, 416, If-Range, ETag/304), access (401, another user 404), signed
/// URLs (no token; tampered and expired ones refused); curl reads a range too.
async fn files(b: Backend) {
    let server = Server::start_with(b, &[("CHORUS_FILE_URL_TTL_SECS", "2")]).await;
    let (ann, _) = server.login("ann@example.com", "Ann").await;
    let (bob, _) = server.login("bob@example.com", "Bob").await;
    let tus = Tus::new(&server, &ann.token);
    let other = Tus::new(&server, &bob.token);
    // A PNG signature first: the type is sniffed from the bytes (the name says .txt).
    let mut body = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    body.extend(Data::new(5).bytes(0, 3 * MIB));
    let size = body.len() as u64;
    let id = tus.create(size, "../../etc/evil\u{7}.txt").await;
    // Two PATCHes: the file is two parts.
    let half = size / 2;
    for (from, to) in [(0, half), (half, size)] {
        let r = tus
            .http
            .patch(format!("{}/v1/uploads/{id}", server.base))
            .bearer_auth(&ann.token)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", from.to_string())
            .body(body[from as usize..to as usize].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["upload-offset"], to.to_string().as_str());
    }

    let meta: serde_json::Value = tus.get(&format!("/v1/files/{id}"), &[]).await.json().await.unwrap();
    assert_eq!(meta["id"], id.as_str());
    assert_eq!(meta["name"], "evil.txt", "no path parts, no control characters");
    assert_eq!(meta["type"], "image/png");
    assert_eq!(meta["size"], size);
    assert_eq!(meta["uploader"], ann.user.address.as_str());
    assert!(meta["created_ms"].as_i64().unwrap() > 0);
    assert!(!meta.to_string().contains("ann@example.com"), "never an email: {meta}");

    let content = format!("/v1/files/{id}/content");
    let r = tus.get(&content, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let disp = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disp.starts_with("inline;") && disp.contains("filename=\"evil.txt\""), "{disp}");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // A range across the two parts.
    let (a, z) = (half - 100, half + 99);
    let r = tus.get(&content, &[("range", &format!("bytes={a}-{z}"))]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], format!("bytes {a}-{z}/{size}").as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), body[a as usize..=z as usize]);
    let r = tus.get(&content, &[("range", "bytes=-16")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body[body.len() - 16..]);
    let r = tus.get(&content, &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], format!("bytes */{size}").as_str());
    let r = tus.get(&content, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "If-Range with the current ETag");
    let r = tus.get(&content, &[("range", "bytes=0-9"), ("if-range", &modified)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "If-Range with the Last-Modified date");
    let r = tus.get(&content, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!(r.status(), StatusCode::OK, "If-Range with another ETag: the whole file");
    assert_eq!(r.bytes().await.unwrap().len() as u64, size);
    let r = tus.get(&content, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // curl, a client we did not write, reads a range.
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-r", "8-15", "-H"])
        .arg(format!("Authorization: Bearer {}", ann.token))
        .arg(format!("{}{content}", server.base))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(head.contains(&format!("content-range: bytes 8-15/{size}")), "{head}");

    // Access: no token 401; another user 404 everywhere, as for an unknown id.
    let r = reqwest::get(format!("{}{content}", server.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for path in [format!("/v1/files/{id}"), content.clone(), "/v1/files/0123456789abcdef0123456789abcdef".into()] {
        let r = other.get(&path, &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(r).await, "not_found");
    }
    let r = other.http.post(format!("{}/v1/files/{id}/url", server.base)).bearer_auth(&bob.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(other.head(&id).await.status(), StatusCode::NOT_FOUND);
    let r = other.delete(&id).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another user cannot delete it");
    assert_eq!(tus.get(&content, &[]).await.status(), StatusCode::OK, "still there");

    // A signed URL: no token needed, until it expires; tampering is refused.
    let r = tus.http.post(format!("{}/v1/files/{id}/url", server.base)).bearer_auth(&ann.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let signed: serde_json::Value = r.json().await.unwrap();
    let url = signed["url"].as_str().unwrap().to_string();
    assert!(signed["expires_ms"].as_i64().unwrap() > 0);
    let plain = reqwest::Client::new();
    let r = plain.get(format!("{}{url}", server.base)).header("range", "bytes=0-7").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body[..8]);
    let tampered = url.replace(&id, &id.chars().rev().collect::<String>());
    let r = plain.get(format!("{}{tampered}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (path, query) = url.split_once('?').unwrap();
    let mut later = String::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("expires", v)) => later.push_str(&format!("expires={}&", v.parse::<i64>().unwrap() + 60_000)),
            _ => later.push_str(&format!("{kv}&")),
        }
    }
    let r = plain.get(format!("{}{path}?{}", server.base, later.trim_end_matches('&'))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a later expiry is not signed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = plain.get(format!("{}{url}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "expired");
}

// ------------------------------------------------------------------ sendfile

/// A `GET` over a raw socket with a small receive buffer (so the server cannot send far ahead
/// of what is read): returns the socket, the answer's head and the body bytes read with it.
async fn raw_get(server: &Server, path: &str, headers: &str) -> (tokio::net::TcpStream, String, Vec<u8>) {
    let addr: std::net::SocketAddr = server.base.strip_prefix("http://").unwrap().parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = sock.connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before the answer's head");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            return (s, head, got[end + 4..].to_vec());
        }
    }
}

/// Reads `n` more body bytes (or up to the end) into `body`.
async fn read_more(s: &mut tokio::net::TcpStream, body: &mut Vec<u8>, n: usize) {
    let want = body.len() + n;
    let mut buf = vec![0; 64 * 1024];
    while body.len() < want {
        let k = s.read(&mut buf).await.unwrap_or(0);
        if k == 0 {
            return;
        }
        body.extend_from_slice(&buf[..k]);
    }
}

/// How many of the server's open file descriptors are files of upload `id`.
fn open_parts(pid: u32, id: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(id)))
        .count()
}

/// Waits (up to a minute) until the server holds no file of `id` open.
async fn parts_closed(pid: u32, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_parts(pid, id) > 0 {
        assert!(Instant::now() < deadline, "the server still holds {} file(s) of {id} open", open_parts(pid, id));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// File contents on plain HTTP go out with `sendfile` (http/sendfile.rs): a three-part file
/// read whole, in ranges across parts and with `HEAD` is the original byte for byte, the same
/// as with `media_sendfile = false`; a client that goes away mid-file leaves no file open; a
/// file deleted while it is read is still sent whole (with sendfile; without, it may be cut,
/// never wrong); a part cut short under a reader ends the
/// connection before `Content-Length`, never padded, and the bytes sent are the file's.
async fn zero_copy(b: Backend) {
    for sendfile in ["true", "false"] {
        let server = Server::start_with(b, &[("CHORUS_MEDIA_SENDFILE", sendfile)]).await;
        let (sess, _) = server.login("ann@example.com", "Ann").await;
        let tus = Tus::new(&server, &sess.token);
        let data = Data::new(77);
        let part = 16 * MIB;
        let size = 3 * part;
        let upload = |name: &'static str| {
            let tus = &tus;
            let data = &data;
            async move {
                let id = tus.create(size, name).await;
                for k in 0..3 {
                    let (status, answer) = tus.patch(&id, data, k * part, part, None).await.unwrap();
                    assert_eq!(status, 204, "{answer}");
                }
                id
            }
        };
        let id = upload("a.bin").await;
        let content = format!("/v1/files/{id}/content");

        let r = tus.get(&content, &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-length"], size.to_string().as_str());
        let (sum, n) = sha256_of(r).await;
        assert_eq!((n, hex::encode(sum)), (size, hex::encode(data.sha256(size))), "sendfile {sendfile}");
        for (a, z) in [(part - 5, 2 * part + 4), (0, 0), (size - 1, size - 1), (123_456, 123_456 + 3 * MIB)] {
            let r = tus.get(&content, &[("range", &format!("bytes={a}-{z}"))]).await;
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(r.headers()["content-range"], format!("bytes {a}-{z}/{size}").as_str());
            assert!(
                r.bytes().await.unwrap().to_vec() == data.bytes(a, z - a + 1),
                "bytes {a}-{z}, sendfile {sendfile}"
            );
        }
        let r = tus.http.head(format!("{}{content}", server.base)).bearer_auth(&sess.token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-length"], size.to_string().as_str());
        assert!(r.bytes().await.unwrap().is_empty());
        // Keep-alive: several answers on one connection (reqwest's pool) in a row stay whole.
        for k in 0..4u64 {
            let a = k * 7 * MIB + 11;
            let r = tus.get(&content, &[("range", &format!("bytes={a}-{}", a + MIB - 1))]).await;
            assert!(r.bytes().await.unwrap().to_vec() == data.bytes(a, MIB));
        }

        // A client that goes away mid-file: the server closes the file.
        let pid = server.pid();
        let auth = format!("Authorization: Bearer {}\r\n", sess.token);
        let (mut s, head, mut body) = raw_get(&server, &content, &auth).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        read_more(&mut s, &mut body, MIB as usize).await;
        assert!(open_parts(pid, &id) > 0, "the answer holds its file open while it is read");
        drop(s);
        parts_closed(pid, &id).await;

        // Deleted while it is read: still sent whole, from the open files.
        let (mut s, head, mut body) = raw_get(&server, &content, &auth).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        read_more(&mut s, &mut body, MIB as usize).await;
        assert_eq!(tus.delete(&id).await.status(), StatusCode::NO_CONTENT);
        assert!(files_under(&server.data.path().join("media/uploads").join(&id)).is_empty());
        read_more(&mut s, &mut body, usize::MAX / 2).await;
        if sendfile == "true" {
            assert_eq!(body.len() as u64, size);
        } else {
            // The read-and-write path opens each part when it gets to it: the answer may end early.
            assert!(body.len() as u64 >= MIB && body.len() as u64 <= size, "{} bytes", body.len());
        }
        assert!(body == data.bytes(0, body.len() as u64), "sendfile {sendfile}");
        parts_closed(pid, &id).await;
        assert_eq!(tus.get(&content, &[]).await.status(), StatusCode::NOT_FOUND, "deleted: no kept copy serves it");

        // A part cut short under a reader: the connection ends early, the bytes are the file's.
        let id = upload("b.bin").await;
        let content = format!("/v1/files/{id}/content");
        let (mut s, head, mut body) = raw_get(&server, &content, &auth).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        read_more(&mut s, &mut body, MIB as usize).await;
        let last = server.data.path().join("media/uploads").join(&id).join(format!("{:020}", 2 * part));
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(MIB).unwrap();
        read_more(&mut s, &mut body, usize::MAX / 2).await;
        if sendfile == "true" {
            assert_eq!(body.len() as u64, 2 * part + MIB, "the parts, then what is left of the last");
        } else {
            // The read-and-write path ends the answer when a read fails; hyper drops what it
            // buffered but had not written yet (up to one read of 256 KiB), so it may end a
            // little earlier (3 of 5 runs here did).
            let n = body.len() as u64;
            assert!((2 * part..=2 * part + MIB).contains(&n), "{n} bytes: never more than the file holds");
        }
        assert!(body == data.bytes(0, body.len() as u64), "sendfile {sendfile}");
        parts_closed(pid, &id).await;
    }
}

// ------------------------------------------------------------------ tuspy

/// tuspy (PyPI), a tus client we did not write, uploads a file in 1 MiB chunks.
async fn tuspy(b: Backend) {
    let server = Server::start(b).await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.bin");
    let data = Data::new(9);
    let size = 5 * MIB + 321;
    std::fs::write(&file, data.bytes(0, size)).unwrap();
    let script = r#"
import sys
from tusclient import client
base, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
c = client.TusClient(base + "/v1/uploads", headers={"Authorization": "Bearer " + token})
u = c.uploader(path, chunk_size=1024 * 1024, metadata={"filename": "clip.bin"})
u.upload()
print(u.url)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&server.base)
        .arg(&sess.token)
        .arg(&file)
        .output()
        .expect("python3 with tuspy (pip install tuspy)");
    assert!(out.status.success(), "tuspy failed: {}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = url.rsplit('/').next().unwrap().to_string();
    let tus = Tus::new(&server, &sess.token);
    let meta: serde_json::Value = tus.get(&format!("/v1/files/{id}"), &[]).await.json().await.unwrap();
    assert_eq!(meta["name"], "clip.bin");
    assert_eq!(meta["size"], size);
    let (sum, n) = sha256_of(tus.get(&format!("/v1/files/{id}/content"), &[]).await).await;
    assert_eq!(n, size);
    assert_eq!(sum, data.sha256(size));
}

// ------------------------------------------------------------------ S3

/// moto's S3 server (PyPI) on a free loopback port, stopped on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Creating the bucket is the readiness probe.
    loop {
        if let Ok(r) = reqwest::Client::new().put(format!("{}/chorus-media", moto.endpoint)).send().await {
            if r.status().is_success() {
                return moto;
            }
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With `media_store = "s3"`: a cut upload resumes, ranges read back through S3, and nothing
/// lands on the local disk.
async fn s3_store(b: Backend) {
    let moto = moto().await;
    let server = Server::start_with(
        b,
        &[
            ("CHORUS_MEDIA_STORE", "s3"),
            ("CHORUS_S3_ENDPOINT", &moto.endpoint),
            ("CHORUS_S3_BUCKET", "chorus-media"),
            ("CHORUS_S3_REGION", "us-east-1"),
            ("CHORUS_S3_ACCESS_KEY_ID", "testing"),
            ("CHORUS_S3_SECRET_ACCESS_KEY", "testing"),
            ("CHORUS_S3_ALLOW_HTTP", "true"),
        ],
    )
    .await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let tus = Tus::new(&server, &sess.token);
    let data = Data::new(33);
    let size = 24 * MIB + 7;
    let id = tus.create(size, "s3.bin").await;
    assert!(tus.patch(&id, &data, 0, size, Some(11 * MIB + 5)).await.is_none());
    let at = tus.offset(&id).await;
    assert!(at > 0 && at <= 11 * MIB + 5, "offset after the cut: {at}");
    let (status, answer) = tus.patch(&id, &data, at, size - at, None).await.unwrap();
    assert_eq!(status, 204, "{answer}");
    let (sum, n) = sha256_of(tus.get(&format!("/v1/files/{id}/content"), &[]).await).await;
    assert_eq!(n, size);
    assert_eq!(sum, data.sha256(size));
    let (a, z) = (at - 3, at + 2);
    let r = tus.get(&format!("/v1/files/{id}/content"), &[("range", &format!("bytes={a}-{z}"))]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data.bytes(a, 6));
    assert!(files_under(&server.data.path().join("media")).is_empty(), "S3 mode writes nothing to local disk");
    // The parts are in the bucket (moto lists them).
    let list = reqwest::get(format!("{}/chorus-media?list-type=2&prefix=uploads/{id}/", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(list.matches("<Key>").count(), 2, "two parts in the bucket: {list}");
}

// ------------------------------------------------------------------ Mesibo op=upload

/// Mesibo's `op=upload`: a multipart form (sent by curl) is stored like a tus upload and
/// answered `{file: url}`; over the limit, a bad token or no file are refused with nothing kept.
async fn mesibo_upload(b: Backend) {
    let server = Server::start_with(b, &[("CHORUS_MAX_UPLOAD_BYTES", "4194304")]).await;
    let (sess, _) = server.login("ann@example.com", "Ann").await;
    let dir = tempfile::tempdir().unwrap();
    let data = Data::new(11);
    let small = dir.path().join("photo.jpg");
    let mut jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
    jpeg.extend(data.bytes(0, 2 * MIB));
    std::fs::write(&small, &jpeg).unwrap();
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big).unwrap().write_all(&data.bytes(0, 5 * MIB)).unwrap();
    let curl = |token: &str, file: &Path| curl_upload(&server.base, token, file, &[]);
    let reply = curl(&sess.token, &small);
    assert_eq!(reply["result"], "OK", "{reply}");
    assert_eq!(reply["op"], "upload");
    let url = reply["file"].as_str().unwrap();
    let r = reqwest::Client::new().get(format!("{}{url}", server.base)).bearer_auth(&sess.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().to_vec(), jpeg);
    let stored = files_under(&server.data.path().join("media"));
    assert_eq!(stored.len(), 1);

    let reply = curl(&sess.token, &big);
    assert_eq!(reply["error"], "TOOLARGE", "{reply}");
    let reply = curl("not-a-token", &small);
    assert_eq!(reply["error"], "AUTHFAIL", "{reply}");
    let out = std::process::Command::new("curl")
        .args(["-s", "-F", "op=upload", "-F"])
        .arg(format!("token={}", sess.token))
        .arg(format!("{}/api", server.base))
        .output()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["error"], "MISSINGFILE", "{reply}");
    assert_eq!(files_under(&server.data.path().join("media")), stored, "refused uploads left nothing");

    // Refusals reach a client that is still sending its file: with `Expect: 100-continue`
    // (curl's default for large bodies) and without it (curl `-H Expect:`), which sends the
    // whole body at once. The server answers before it has read the file; without reading the
    // rest first, its close reset the connection and curl printed nothing (1 run in a few).
    let almost = dir.path().join("almost.bin");
    std::fs::File::create(&almost).unwrap().write_all(&data.bytes(0, 4 * MIB - 1024)).unwrap();
    for round in 0..8 {
        for expect in [&[][..], &["-H", "Expect:"][..]] {
            let reply = curl_upload(&server.base, "not-a-token", &almost, expect);
            assert_eq!(reply["error"], "AUTHFAIL", "round {round} {expect:?}: {reply}");
            let reply = curl_upload(&server.base, &sess.token, &big, expect);
            assert_eq!(reply["error"], "TOOLARGE", "round {round} {expect:?}: {reply}");
        }
    }
    assert_eq!(files_under(&server.data.path().join("media")), stored, "refused uploads left nothing");
}

/// Mesibo's `op=upload` of `file` by curl (`extra` arguments first); its JSON answer.
fn curl_upload(base: &str, token: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(extra)
        .args(["-sS", "-F", "op=upload", "-F"])
        .arg(format!("token={token}"))
        .arg("-F")
        .arg(format!("file=@{}", file.display()))
        .arg(format!("{base}/api"))
        .output()
        .expect("curl");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "JSON reply: {:?}, curl said {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

both_backends!(
    resume_after_cut,
    memory_bounded,
    limits,
    expiry,
    deleted_user,
    files,
    zero_copy,
    tuspy,
    s3_store,
    mesibo_upload
);
