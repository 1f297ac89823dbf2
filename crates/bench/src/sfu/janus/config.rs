//! The private configuration folder Janus is started with: `janus.jcfg`, the VideoRoom
//! plugin's and the WebSocket transport's files, nothing else (see the module docs of
//! [`super`] for why each setting is what it is).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The room every participant joins (declared in `janus.plugin.videoroom.jcfg`).
pub const ROOM: u64 = 1234;

/// The VideoRoom plugin's file name.
pub const VIDEOROOM_SO: &str = "libjanus_videoroom.so";

/// The WebSocket transport's file name.
pub const WEBSOCKETS_SO: &str = "libjanus_websockets.so";

/// Where the Debian package (and a source install) put Janus's modules.
const LIB_DIRS: [&str; 4] =
    ["/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus", "/usr/lib/janus", "/opt/janus/lib/janus"];

/// Everything that varies between runs.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// The configs folder (`-F`), also where `janus.jcfg` goes.
    pub dir: PathBuf,
    /// The module folder holding `plugins/`, `transports/`, `events/` and `loggers/`.
    pub lib: PathBuf,
    /// The WebSocket API port (on 127.0.0.1).
    pub ws_port: u16,
    /// RTP/RTCP port range of the peer connections.
    pub rtp_ports: (u16, u16),
    /// The only interface ICE gathers candidates on.
    pub ice_iface: String,
    /// Janus's `debug_level` (0–7).
    pub debug_level: u8,
    /// Maximum publishers of the room.
    pub publishers: usize,
    /// Record every publisher into this folder (`record = true`, `rec_dir`); `None`: no recording.
    pub record: Option<PathBuf>,
    /// Modules present, per folder (file names), so every one but the one used is disabled.
    pub modules: Modules,
}

/// The module files found in each folder of [`JanusConfig::lib`].
#[derive(Debug, Clone, Default)]
pub struct Modules {
    /// `plugins/`.
    pub plugins: Vec<String>,
    /// `transports/`.
    pub transports: Vec<String>,
    /// `events/`.
    pub events: Vec<String>,
    /// `loggers/`.
    pub loggers: Vec<String>,
}

impl Modules {
    /// Lists the `*.so` files of each folder under `lib` (a missing folder lists nothing).
    pub fn scan(lib: &Path) -> Modules {
        let list = |sub: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(lib.join(sub))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| n.ends_with(".so"))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        Modules {
            plugins: list("plugins"),
            transports: list("transports"),
            events: list("events"),
            loggers: list("loggers"),
        }
    }
}

/// The first of the usual module folders that holds the VideoRoom plugin.
pub fn find_lib() -> Option<PathBuf> {
    LIB_DIRS.iter().map(PathBuf::from).find(|d| d.join("plugins").join(VIDEOROOM_SO).exists())
}

/// A comma-separated list of `all` but `keep`.
fn disable_all_but(all: &[String], keep: Option<&str>) -> String {
    all.iter().filter(|n| Some(n.as_str()) != keep).cloned().collect::<Vec<_>>().join(",")
}

impl JanusConfig {
    /// `janus.jcfg`.
    pub fn janus_jcfg(&self) -> String {
        let lib = self.lib.display();
        let m = &self.modules;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = {debug}
	debug_timestamps = false
	debug_colors = false
	server_name = "chorus-bench"
	session_timeout = 60
	token_auth = false
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{lo}-{hi}"
	slowlink_threshold = 0
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{iface}"
}}
plugins: {{
	disable = "{plugins}"
}}
transports: {{
	disable = "{transports}"
}}
loggers: {{
	disable = "{loggers}"
}}
events: {{
	broadcast = false
	disable = "{events}"
}}
"#,
            dir = self.dir.display(),
            debug = self.debug_level.min(7),
            lo = self.rtp_ports.0,
            hi = self.rtp_ports.1,
            iface = self.ice_iface,
            plugins = disable_all_but(&m.plugins, Some(VIDEOROOM_SO)),
            transports = disable_all_but(&m.transports, Some(WEBSOCKETS_SO)),
            loggers = disable_all_but(&m.loggers, None),
            events = disable_all_but(&m.events, None),
        );
        s
    }

    /// `janus.plugin.videoroom.jcfg`: the one room, VP8 + Opus, no bitrate cap, no periodic
    /// keyframe requests, no extra notifications; recording only in the record runs
    /// (`record = true` with `rec_dir`).
    pub fn videoroom_jcfg(&self) -> String {
        format!(
            r#"general: {{
}}
room-{ROOM}: {{
	description = "chorus-bench"
	publishers = {publishers}
	bitrate = 0
	bitrate_cap = false
	fir_freq = 0
	audiocodec = "opus"
	videocodec = "vp8"
	{record}
	notify_joining = false
	audiolevel_event = false
}}
"#,
            publishers = self.publishers.max(1),
            record = match &self.record {
                Some(dir) => format!("record = true\n\trec_dir = \"{}\"", dir.display()),
                None => "record = false".into(),
            },
        )
    }

    /// `janus.transport.websockets.jcfg`: plain WebSocket on 127.0.0.1 only, compact JSON, no
    /// admin API.
    pub fn websockets_jcfg(&self) -> String {
        format!(
            r#"general: {{
	json = "compact"
	ws = true
	ws_port = {port}
	ws_ip = "127.0.0.1"
	wss = false
	ws_logging = "err"
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
cors: {{
}}
certificates: {{
}}
"#,
            port = self.ws_port,
        )
    }

    /// Writes the three files into [`JanusConfig::dir`]; returns the path of `janus.jcfg`.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let main = self.dir.join("janus.jcfg");
        std::fs::write(&main, self.janus_jcfg())?;
        std::fs::write(self.dir.join("janus.plugin.videoroom.jcfg"), self.videoroom_jcfg())?;
        std::fs::write(self.dir.join("janus.transport.websockets.jcfg"), self.websockets_jcfg())?;
        Ok(main)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JanusConfig {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        JanusConfig {
            dir: "/tmp/janus-x".into(),
            lib: "/usr/lib/x86_64-linux-gnu/janus".into(),
            ws_port: 8999,
            rtp_ports: (10000, 30000),
            ice_iface: "bench0".into(),
            debug_level: 3,
            publishers: 4,
            record: None,
            modules: Modules {
                plugins: names(&["libjanus_audiobridge.so", "libjanus_echotest.so", "libjanus_videoroom.so"]),
                transports: names(&["libjanus_http.so", "libjanus_websockets.so"]),
                events: names(&["libjanus_sampleevh.so"]),
                loggers: names(&["libjanus_jsonlog.so"]),
            },
        }
    }

    #[test]
    fn janus_jcfg_enables_only_videoroom_and_websockets() {
        let c = sample().janus_jcfg();
        assert!(c.contains(r#"configs_folder = "/tmp/janus-x""#), "{c}");
        assert!(c.contains(r#"plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins""#), "{c}");
        assert!(c.contains(r#"disable = "libjanus_audiobridge.so,libjanus_echotest.so""#), "{c}");
        assert!(c.contains(r#"disable = "libjanus_http.so""#), "{c}");
        assert!(c.contains(r#"disable = "libjanus_jsonlog.so""#), "{c}");
        assert!(c.contains(r#"disable = "libjanus_sampleevh.so""#), "{c}");
        assert!(c.contains("broadcast = false"), "{c}");
        assert!(c.contains(r#"ice_enforce_list = "bench0""#), "{c}");
        assert!(c.contains(r#"rtp_port_range = "10000-30000""#), "{c}");
        assert!(c.contains("debug_level = 3"), "{c}");
        assert!(!c.contains("stun_server"), "no STUN: {c}");
        // Balanced braces: every section closes.
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn room_and_transport() {
        let cfg = sample();
        let v = cfg.videoroom_jcfg();
        assert!(v.contains(&format!("room-{ROOM}: {{")), "{v}");
        assert!(v.contains("publishers = 4") && v.contains("bitrate = 0") && v.contains("fir_freq = 0"), "{v}");
        assert!(v.contains(r#"videocodec = "vp8""#) && v.contains(r#"audiocodec = "opus""#), "{v}");
        assert!(v.contains("record = false"), "{v}");
        let rec = JanusConfig { record: Some("/tmp/rec".into()), ..cfg.clone() }.videoroom_jcfg();
        assert!(rec.contains("record = true\n\trec_dir = \"/tmp/rec\""), "{rec}");
        let w = cfg.websockets_jcfg();
        assert!(w.contains("ws_port = 8999") && w.contains(r#"ws_ip = "127.0.0.1""#), "{w}");
        assert!(w.contains("admin_ws = false") && w.contains("wss = false"), "{w}");
    }

    #[test]
    fn writes_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JanusConfig { dir: dir.path().join("conf"), ..sample() };
        let main = cfg.write().unwrap();
        assert_eq!(main, dir.path().join("conf/janus.jcfg"));
        for f in ["janus.jcfg", "janus.plugin.videoroom.jcfg", "janus.transport.websockets.jcfg"] {
            assert!(dir.path().join("conf").join(f).exists(), "{f}");
        }
    }
}
