//! The media benchmark (issue #11): uploads over tus and range reads of one large file, Chorus
//! beside nginx on the host's loopback, in one run.
//!
//! 1. **Uploads.** A fresh `chorus serve` (SQLite, local media store in its temporary data
//!    directory) takes `--media-uploads` parallel tus uploads of `--media-upload-size` random
//!    bytes each, then one upload of the large file (`--media-size`, default 1 GiB): throughput
//!    on loopback and the server's CPU (user + system, `/proc/<pid>/stat`) per GB stored.
//! 2. **Range reads.** The same bytes are written to a directory that nginx ([`nginx`]) serves
//!    with `sendfile`. `--media-clients` clients, each on its own keep-alive connection, read
//!    random `--media-range`-byte ranges for `--media-duration` after a warm-up, first from
//!    Chorus (through a signed URL, `POST /v1/files/{id}/url`, so no header but `Range`), then
//!    from nginx: GB/s, requests/s, server CPU per GB served (nginx: master and workers summed),
//!    p50/p99 request → last byte. Every answer must be `206` with the right `Content-Range` and
//!    length, and every `--media-verify-every`-th body is compared byte for byte with the
//!    original; the first wrong answer fails the run.
//!
//! Both files are fresh writes, so both servers read from the page cache: the benchmark
//! measures the servers, not the disk. GB are 10⁹ bytes.

pub mod load;
pub mod nginx;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde::Serialize;
use serde_json::json;

use crate::proc::{self, Cost};
use crate::report::{Better, Metric, Section};
use crate::server::{ChorusServer, ServerOptions};
use crate::Common;
use load::{ReadLoad, ReadTotals};

/// Sizes of the media benchmark. (Flags are prefixed: they share the `all` command line.)
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct MediaArgs {
    /// Size of the large file read in ranges (and uploaded once), bytes.
    #[arg(long, default_value_t = 1 << 30, value_parser = crate::positive)]
    pub media_size: usize,
    /// Parallel tus uploads of the upload measurement.
    #[arg(long, default_value_t = 8, value_parser = crate::positive)]
    pub media_uploads: usize,
    /// Size of each of the parallel uploads, bytes.
    #[arg(long, default_value_t = 64 << 20, value_parser = crate::positive)]
    pub media_upload_size: usize,
    /// Concurrent range-reading clients, each on its own connection.
    #[arg(long, default_value_t = 64, value_parser = crate::positive)]
    pub media_clients: usize,
    /// Bytes per range read.
    #[arg(long, default_value_t = 1 << 20, value_parser = crate::positive)]
    pub media_range: usize,
    /// Compare every this many answers of a client byte for byte with the original (1: all).
    #[arg(long, default_value_t = 8, value_parser = crate::positive)]
    pub media_verify_every: usize,
    /// Length of each server's measured range-read window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub media_duration: Duration,
    /// Time the readers run before the window opens.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub media_warmup: Duration,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub media_nginx_bin: PathBuf,
    /// After the measurement, read from Chorus once more (8 s, not counted) under
    /// `perf record -g` and put the top of `perf report` in the notes.
    #[arg(long)]
    pub media_perf: bool,
}

impl MediaArgs {
    /// The small sizes of the CI smoke run.
    pub fn smoke() -> MediaArgs {
        MediaArgs {
            media_size: 8 << 20,
            media_uploads: 8,
            media_upload_size: 1 << 20,
            media_clients: 4,
            media_range: 64 << 10,
            media_verify_every: 1,
            media_duration: Duration::from_secs(2),
            media_warmup: Duration::from_millis(300),
            media_nginx_bin: "/usr/sbin/nginx".into(),
            media_perf: false,
        }
    }
}

/// One upload measurement.
#[derive(Debug, Clone, Serialize)]
struct UploadRun {
    files: usize,
    bytes: u64,
    server: Cost,
    client: Cost,
}

/// One server's range reads.
#[derive(Debug, Clone, Serialize)]
struct ReadRun {
    target: String,
    totals: ReadTotals,
    server: Cost,
    client: Cost,
}

impl ReadRun {
    fn gb_per_sec(&self) -> f64 {
        self.totals.bytes as f64 / 1e9 / self.server.wall_secs
    }
    fn req_per_sec(&self) -> f64 {
        self.totals.requests as f64 / self.server.wall_secs
    }
    fn cpu_per_gb(&self) -> f64 {
        self.server.cpu_secs / (self.totals.bytes as f64 / 1e9)
    }
}

/// Runs both parts and returns their report sections.
pub async fn run(args: &MediaArgs, common: &Common) -> anyhow::Result<Vec<Section>> {
    let p = &common.progress;
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    p.step(format!("media: {} random bytes, Chorus and nginx ({workers} workers)", args.media_size));
    let data = load::random_bytes(args.media_size, 1);
    let root = tempfile::Builder::new().prefix("chorus-bench-media-").tempdir()?;
    std::fs::write(root.path().join("big.bin"), &data)?;

    let biggest = args.media_size.max(args.media_upload_size);
    let all = args.media_size + args.media_uploads * args.media_upload_size;
    let options = ServerOptions::new(common.chorus_bin.clone())
        .env("CHORUS_MAX_UPLOAD_BYTES", biggest)
        .env("CHORUS_UPLOAD_QUOTA_BYTES", all.max(1 << 30) * 2)
        .env("CHORUS_MAX_UNFINISHED_UPLOADS", args.media_uploads.max(10));
    let srv = ChorusServer::start(&options)?;
    let user = srv.users("media", 1).await?.remove(0);
    let http = reqwest::Client::builder().no_proxy().build()?;

    // Uploads: the parallel ones, then the large file.
    p.step(format!("media: {} parallel tus uploads of {} bytes", args.media_uploads, args.media_upload_size));
    let small = load::random_bytes(args.media_uploads * args.media_upload_size, 2);
    let parallel = measure(&[srv.pid()], async {
        let uploads = (0..args.media_uploads).map(|i| {
            let body = small.slice(i * args.media_upload_size..(i + 1) * args.media_upload_size);
            load::tus_upload(&http, &srv.base, &user.token, body)
        });
        futures_util::future::try_join_all(uploads).await
    })
    .await?;
    let parallel_run = UploadRun {
        files: args.media_uploads,
        bytes: (args.media_uploads * args.media_upload_size) as u64,
        server: parallel.1,
        client: parallel.2,
    };
    drop(small);
    p.step(format!("media: one tus upload of {} bytes", args.media_size));
    let (id, server, client) =
        measure(&[srv.pid()], load::tus_upload(&http, &srv.base, &user.token, data.clone())).await?;
    let single_run = UploadRun { files: 1, bytes: args.media_size as u64, server, client };
    let info: serde_json::Value =
        http.get(format!("{}/v1/files/{id}", srv.base)).bearer_auth(&user.token).send().await?.json().await?;
    if info["size"] != json!(args.media_size) {
        bail!("the uploaded file is {} bytes, not {}", info["size"], args.media_size);
    }
    let signed: serde_json::Value = http
        .post(format!("{}/v1/files/{id}/url", srv.base))
        .bearer_auth(&user.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let path = signed["url"].as_str().ok_or_else(|| anyhow!("no signed URL: {signed}"))?;
    let chorus_url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", srv.base) };

    let nginx = nginx::Nginx::start(&args.media_nginx_bin, root.path(), workers)?;
    let nginx_url = format!("http://{}/big.bin", nginx.addr);
    let read_load = |url: String| ReadLoad {
        url,
        data: data.clone(),
        clients: args.media_clients,
        range: args.media_range,
        verify_every: args.media_verify_every as u64,
        warmup: args.media_warmup,
        duration: args.media_duration,
    };
    let mut runs = Vec::new();
    for (target, url) in [("chorus", &chorus_url), ("nginx", &nginx_url)] {
        let pids = if target == "chorus" { vec![srv.pid()] } else { nginx.pids() };
        p.step(format!(
            "media: {target}: {} clients reading {}-byte ranges for {:?}",
            args.media_clients, args.media_range, args.media_duration
        ));
        let run = reads(target, read_load(url.clone()), &pids).await?;
        p.step(format!(
            "  {target}: {:.2} GB/s, {:.0} req/s, server {:.2} cores = {:.2} CPU-s/GB, p50 {:.1} ms, p99 {:.1} ms",
            run.gb_per_sec(),
            run.req_per_sec(),
            run.server.cores,
            run.cpu_per_gb(),
            run.totals.latency.p50_ms(),
            run.totals.latency.p99_ms()
        ));
        runs.push(run);
    }
    let perf = if args.media_perf {
        p.step("media: chorus again for 8 s under perf record (not counted)");
        let mut l = read_load(chorus_url.clone());
        l.duration = Duration::from_secs(8);
        l.warmup = Duration::from_secs(1);
        let open = Instant::now() + l.warmup;
        let pid = srv.pid();
        let profile = tokio::spawn(async move {
            tokio::time::sleep_until(open.into()).await;
            let (child, file) = crate::msg::perf_start(&[pid], Duration::from_secs(8))?;
            crate::msg::perf_finish(child, &file).await
        });
        load::range_reads(&l, open).await?;
        profile.await?
    } else {
        None
    };
    drop(nginx);
    let peer = nginx::version(&args.media_nginx_bin).unwrap_or_else(|| "nginx".into());
    Ok(vec![upload_section(args, &parallel_run, &single_run), read_section(args, &runs, &peer, workers, perf)])
}

/// Runs `work`, measuring the CPU of `pids` (summed) and of this process over it.
async fn measure<T>(
    pids: &[u32],
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Cost, Cost)> {
    let server = pids.iter().map(|&p| proc::Window::open(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let client = proc::Window::open(std::process::id())?;
    let out = work.await?;
    let client = client.close()?;
    Ok((out, sum(&server)?, client))
}

/// The windows' costs added up (the wall clock is the first one's).
fn sum(windows: &[proc::Window]) -> anyhow::Result<Cost> {
    let mut total = Cost::default();
    for w in windows {
        let c = w.close()?;
        total.wall_secs = total.wall_secs.max(c.wall_secs);
        total.cpu_secs += c.cpu_secs;
        total.rss_kib += c.rss_kib;
        total.rss_peak_kib += c.rss_peak_kib;
    }
    total.cores = if total.wall_secs > 0.0 { total.cpu_secs / total.wall_secs } else { 0.0 };
    Ok(total)
}

/// One server's range reads: the readers start now, the window opens after the warm-up.
async fn reads(target: &str, l: ReadLoad, pids: &[u32]) -> anyhow::Result<ReadRun> {
    let open = Instant::now() + l.warmup;
    let close = open + l.duration;
    let pids = pids.to_vec();
    let probe = tokio::spawn(async move {
        tokio::time::sleep_until(open.into()).await;
        let server = pids.iter().map(|&p| proc::Window::open(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let client = proc::Window::open(std::process::id())?;
        tokio::time::sleep_until(close.into()).await;
        anyhow::Ok((sum(&server)?, client.close()?))
    });
    let totals = load::range_reads(&l, open).await?;
    let (server, client) = probe.await??;
    if totals.requests == 0 {
        bail!("{target}: no range read completed inside the window");
    }
    Ok(ReadRun { target: target.into(), totals, server, client })
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn upload_section(args: &MediaArgs, parallel: &UploadRun, single: &UploadRun) -> Section {
    let mut s = Section::new(
        "media-upload",
        &format!(
            "Uploads over tus on loopback: {} parallel × {}, then one of {}",
            parallel.files,
            size(args.media_upload_size),
            size(args.media_size)
        ),
        json!({"uploads": args.media_uploads, "upload_size": args.media_upload_size, "size": args.media_size}),
    );
    for (label, r) in [(format!("{} parallel uploads", parallel.files), parallel), ("one upload".to_string(), single)] {
        s.metrics.push(Metric::new(
            &format!("{label}: throughput"),
            "GB/s",
            Better::Higher,
            gb(r.bytes) / r.server.wall_secs,
        ));
        s.metrics.push(Metric::new(
            &format!("{label}: server CPU per GB uploaded"),
            "CPU-s/GB",
            Better::Lower,
            r.server.cpu_secs / gb(r.bytes),
        ));
        s.metrics.push(Metric::new(&format!("{label}: server cores busy"), "cores", Better::Lower, r.server.cores));
    }
    s.notes.push(format!(
        "Each upload is a tus creation (`POST /v1/uploads`) and one `PATCH` with the whole body (204, `Upload-Offset` = length checked); \
         the time runs from the first creation to the last 204. The server's CPU is user + system of its process (`/proc/<pid>/stat`); \
         the load generator used {:.2} and {:.2} cores meanwhile.",
        parallel.client.cores, single.client.cores
    ));
    s.details = json!({"parallel": parallel, "single": single});
    s
}

fn read_section(args: &MediaArgs, runs: &[ReadRun], peer: &str, workers: usize, perf: Option<String>) -> Section {
    let mut s = Section::new(
        "media-reads",
        &format!(
            "Range reads: {} clients × random {} ranges of a {} file, beside {peer}",
            args.media_clients,
            size(args.media_range),
            size(args.media_size)
        ),
        json!({
            "clients": args.media_clients,
            "range": args.media_range,
            "size": args.media_size,
            "duration_ms": args.media_duration.as_millis() as u64,
            "warmup_ms": args.media_warmup.as_millis() as u64,
            "workers": workers,
        }),
    );
    s.peer_name = Some(peer.to_string());
    let chorus = runs.iter().find(|r| r.target == "chorus");
    let nginx = runs.iter().find(|r| r.target == "nginx");
    let pair = |f: &dyn Fn(&ReadRun) -> f64| (chorus.map(f).unwrap_or(f64::NAN), nginx.map(f));
    let metric = |name: &str, unit: &str, better: Better, f: &dyn Fn(&ReadRun) -> f64| {
        let (c, n) = pair(f);
        Metric::new(name, unit, better, c).peer(n)
    };
    s.metrics
        .push(metric("throughput", "GB/s", Better::Higher, &ReadRun::gb_per_sec).target_vs_peer("≥ 0.9× nginx", 0.9));
    s.metrics.push(metric("requests", "req/s", Better::Higher, &ReadRun::req_per_sec));
    s.metrics.push(metric("server CPU per GB served", "CPU-s/GB", Better::Lower, &ReadRun::cpu_per_gb));
    s.metrics.push(metric("server cores busy", "cores", Better::Lower, &|r| r.server.cores));
    s.metrics.push(metric("request → last byte, p50", "ms", Better::Lower, &|r| r.totals.latency.p50_ms()));
    s.metrics.push(metric("request → last byte, p99", "ms", Better::Lower, &|r| r.totals.latency.p99_ms()));
    s.metrics.push(metric("load generator cores busy", "cores", Better::Lower, &|r| r.client.cores));
    let checked: u64 = runs.iter().map(|r| r.totals.checked).sum();
    let compared: u64 = runs.iter().map(|r| r.totals.compared).sum();
    let which = match args.media_verify_every {
        1 => "all of them".to_string(),
        n => format!("every {n}th of each client"),
    };
    s.notes.push(format!(
        "All {checked} answers were 206 with the asked `Content-Range` and length; {compared} bodies ({which}) \
         were compared byte for byte with the original."
    ));
    s.notes.push(format!(
        "Chorus reads through a signed URL (no header but `Range`); nginx serves the same bytes from its own copy with `sendfile on`, \
         `worker_processes {workers}` — the CPUs this process may use, which is also how many worker threads Chorus's Tokio runtime \
         starts. Server CPU: user + system from `/proc/<pid>/stat` (nginx: master and workers summed). Both files are in the page cache."
    ));
    if let Some(perf) = perf {
        s.notes.push(format!("Profile of Chorus during range reads (`perf record -g`, 8 s, a separate pass): {perf}"));
    }
    s.details = json!({"runs": runs.iter().map(|r| json!({
        "target": r.target,
        "totals": r.totals,
        "latency": r.totals.latency.summary(),
        "server": r.server,
        "client": r.client,
    })).collect::<Vec<_>>()});
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size(1000), "1000 B");
    }
}
