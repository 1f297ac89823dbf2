//! What a run reports: sections of metrics (Chorus, its peer, the ratio, the target), written
//! as a human table on stdout, `report.json` for machines, `report.md` (the body of
//! bench/RESULTS.md) and SVG plots beside them.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// Which direction of a metric is good.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// More is better (rates).
    Higher,
    /// Less is better (cost, latency, loss).
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// What it is, e.g. "forwarded packets per server CPU second".
    pub name: String,
    /// Its unit, e.g. "pkt/s".
    pub unit: String,
    /// Chorus's figure.
    pub chorus: Option<f64>,
    /// The peer's figure on the same load (Janus, Redis), if the section has a peer.
    pub peer: Option<f64>,
    /// Which direction is good.
    pub better: Better,
    /// The target, e.g. "≥ 250000", and whether Chorus met it.
    pub target: Option<Target>,
}

/// A target a metric is held to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// As written in the issue, e.g. "≥ 250k/core".
    pub text: String,
    /// Whether Chorus's figure meets it.
    pub met: bool,
    /// Set when the run could not be the size the target names (say, fewer connections
    /// than it asks for): the figure is reported, the target counts as not met.
    pub short_of: Option<String>,
}

impl Metric {
    /// A metric with only Chorus's figure.
    pub fn new(name: &str, unit: &str, better: Better, chorus: f64) -> Metric {
        Metric { name: name.into(), unit: unit.into(), chorus: Some(chorus), peer: None, better, target: None }
    }

    /// Adds the peer's figure.
    pub fn peer(mut self, peer: Option<f64>) -> Metric {
        self.peer = peer;
        self
    }

    /// Holds Chorus's figure to `limit` (≥ for [`Better::Higher`], ≤ for [`Better::Lower`]).
    pub fn target(mut self, text: &str, limit: f64) -> Metric {
        let met = self.chorus.is_some_and(|c| match self.better {
            Better::Higher => c >= limit,
            Better::Lower => c <= limit,
        });
        self.target = Some(Target { text: text.into(), met, short_of: None });
        self
    }

    /// Notes that this run fell short of the size the target names (`why`).
    pub fn short_of(mut self, why: Option<String>) -> Metric {
        if let Some(t) = &mut self.target {
            t.short_of = why;
        }
        self
    }

    /// Holds Chorus's figure to `factor` × the peer's (e.g. CPU/packet ≤ 1/3 of Janus's).
    pub fn target_vs_peer(mut self, text: &str, factor: f64) -> Metric {
        let met = match (self.chorus, self.peer) {
            (Some(c), Some(p)) => match self.better {
                Better::Higher => c >= p * factor,
                Better::Lower => c <= p * factor,
            },
            _ => false,
        };
        self.target = Some(Target { text: text.into(), met, short_of: None });
        self
    }

    /// Chorus / peer.
    pub fn ratio(&self) -> Option<f64> {
        match (self.chorus, self.peer) {
            (Some(c), Some(p)) if p != 0.0 => Some(c / p),
            _ => None,
        }
    }
}

/// A line of an SVG plot.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A line plot written as `<file>.svg`.
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    /// File name without extension.
    pub file: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Short id, e.g. "sfu".
    pub id: String,
    /// Heading.
    pub title: String,
    /// What the first column measured, when not plain "Chorus" (e.g. "3 nodes").
    pub subject: Option<String>,
    /// The peer measured beside Chorus ("Janus 1.1.2", "Redis 7.0.15"), if any.
    pub peer_name: Option<String>,
    /// The load, as parameters.
    pub params: Value,
    /// The figures.
    pub metrics: Vec<Metric>,
    /// Lines of explanation printed under the table (what limits, what was seen).
    pub notes: Vec<String>,
    /// Raw per-stream / per-point data.
    pub details: Value,
    /// Plots.
    pub plots: Vec<Plot>,
}

impl Section {
    /// An empty section.
    pub fn new(id: &str, title: &str, params: Value) -> Section {
        Section {
            id: id.into(),
            title: title.into(),
            subject: None,
            peer_name: None,
            params,
            metrics: Vec::new(),
            notes: Vec::new(),
            details: Value::Null,
            plots: Vec::new(),
        }
    }
}

/// The machine a run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `uname -r`.
    pub kernel: String,
}

impl Machine {
    /// Reads /proc.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        Machine { cpu, cores, memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0, kernel }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Start time (RFC 3339, UTC).
    pub started: String,
    /// The command line.
    pub command: String,
    /// Sections in run order.
    pub sections: Vec<Section>,
}

impl Report {
    /// An empty report for this machine and command line.
    pub fn new() -> Report {
        Report {
            machine: Machine::detect(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            sections: Vec::new(),
        }
    }

    /// Targets met and targets in all.
    pub fn targets(&self) -> (usize, usize) {
        let targets: Vec<bool> = self
            .sections
            .iter()
            .flat_map(|s| &s.metrics)
            .filter_map(|m| m.target.as_ref().map(|t| t.met && t.short_of.is_none()))
            .collect();
        (targets.iter().filter(|m| **m).count(), targets.len())
    }

    /// Markdown: machine, command, one table per section, notes, plot links.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Run {} on {} × {} ({} GiB, Linux {}).\n",
            self.started, m.cores, m.cpu, m.memory_gib, m.kernel
        );
        let _ = writeln!(out, "```\n{}\n```\n", self.command);
        for s in &self.sections {
            let _ = writeln!(out, "### {}\n", s.title);
            if s.metrics.is_empty() {
                // A section of plots only (e.g. the SFU sweep's).
                for p in &s.plots {
                    let _ = writeln!(out, "![{}]({}.svg)\n", p.title, p.file);
                }
                continue;
            }
            let _ = writeln!(out, "Load: `{}`\n", s.params);
            let peer = s.peer_name.as_deref();
            let me = s.subject.as_deref().unwrap_or("Chorus");
            if let Some(p) = peer {
                let _ = writeln!(out, "| metric | {me} | {p} | {me} / {p} | target |");
                let _ = writeln!(out, "|---|---:|---:|---:|---|");
            } else {
                let _ = writeln!(out, "| metric | {me} | target |");
                let _ = writeln!(out, "|---|---:|---|");
            }
            for x in &s.metrics {
                let target = x.target.as_ref().map(|t| match &t.short_of {
                    None => format!("{} {}", t.text, if t.met { "✅" } else { "❌ missed" }),
                    Some(why) => format!(
                        "{} — not run at that size ({why}); {} at this size",
                        t.text,
                        if t.met { "met" } else { "missed" }
                    ),
                });
                let target = target.unwrap_or_default();
                let name = if x.unit.is_empty() { x.name.clone() } else { format!("{} ({})", x.name, x.unit) };
                if peer.is_some() {
                    let _ = writeln!(
                        out,
                        "| {name} | {} | {} | {} | {target} |",
                        fmt(x.chorus),
                        fmt(x.peer),
                        x.ratio().map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into())
                    );
                } else {
                    let _ = writeln!(out, "| {name} | {} | {target} |", fmt(x.chorus));
                }
            }
            out.push('\n');
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
            for p in &s.plots {
                let _ = writeln!(out, "\n![{}]({}.svg)", p.title, p.file);
            }
            out.push('\n');
        }
        out
    }

    /// Prints the tables (the markdown, which reads well in a terminal too).
    pub fn print(&self) {
        println!("{}", self.markdown());
    }

    /// Writes `report.json`, `report.md` and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        for s in &self.sections {
            for p in &s.plots {
                std::fs::write(dir.join(format!("{}.svg", p.file)), svg(p))?;
            }
        }
        Ok(())
    }
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

/// A figure with three significant digits, thousands separated.
pub fn fmt(v: Option<f64>) -> String {
    let Some(v) = v else { return "–".into() };
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let n = v.round() as i64;
        let s = n.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if n < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// A small self-contained SVG line plot (axes from 0, five ticks each, legend).
pub fn svg(p: &Plot) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 50.0);
    let pts = p.series.iter().flat_map(|s| s.points.iter());
    let (mut xmax, mut ymax) = (0.0f64, 0.0f64);
    for &(x, y) in pts {
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    let xmax = nice(xmax);
    let ymax = nice(ymax);
    let sx = |x: f64| left + x / xmax * (w - left - right);
    let sy = |y: f64| h - bottom - y / ymax * (h - top - bottom);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(o, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#, w / 2.0, esc(&p.title));
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (x, y) = (sx(xmax * f), sy(ymax * f));
        let _ = writeln!(o, r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##, w - right);
        let _ =
            writeln!(o, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 6.0, y + 4.0, fmt(Some(ymax * f)));
        let _ = writeln!(
            o,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            h - bottom + 18.0,
            fmt(Some(xmax * f))
        );
    }
    let _ = writeln!(
        o,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (left + w - right) / 2.0,
        h - 12.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (top + h - bottom) / 2.0,
        esc(&p.y_label)
    );
    for (i, s) in p.series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(o, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, path.join(" "));
        // Markers only where they can be told apart (a soak has thousands of points).
        for &(x, y) in s.points.iter().filter(|_| s.points.len() <= 200) {
            let _ = writeln!(o, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, sx(x), sy(y));
        }
        let ly = top + 8.0 + 16.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            left + 12.0,
            ly - 4.0,
            left + 30.0,
            ly,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The next "round" number at or above `v` (1, 2, 5 × 10ⁿ).
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ratios() {
        let m = Metric::new("cpu per packet", "µs", Better::Lower, 1.0)
            .peer(Some(4.0))
            .target_vs_peer("≤ 1/3 of Janus", 1.0 / 3.0);
        assert_eq!(m.ratio(), Some(0.25));
        assert!(m.target.as_ref().unwrap().met);
        let m = Metric::new("rate", "pkt/s", Better::Higher, 100.0).target("≥ 250k", 250_000.0);
        assert!(!m.target.unwrap().met);
        // No peer figure: a peer-relative target is not met.
        let m = Metric::new("x", "", Better::Higher, 1.0).target_vs_peer("≥ Redis", 1.0);
        assert!(!m.target.unwrap().met);
    }

    #[test]
    fn numbers_and_plots() {
        assert_eq!(fmt(Some(1234567.4)), "1,234,567");
        assert_eq!(fmt(Some(12.34)), "12.3");
        assert_eq!(fmt(Some(0.01234)), "0.012");
        assert_eq!(nice(730.0), 1000.0);
        assert_eq!(nice(130.0), 200.0);
        let p = Plot {
            file: "x".into(),
            title: "CPU <per> subscriber".into(),
            x_label: "subscribers".into(),
            y_label: "cores".into(),
            series: vec![Series { name: "Chorus".into(), points: vec![(1.0, 0.1), (4.0, 0.3)] }],
        };
        let s = svg(&p);
        assert!(s.starts_with("<svg") && s.contains("polyline") && s.contains("&lt;per&gt;"));
    }
}
