//! `umbra node` processes, as a person runs them: started with a config
//! file, read through `umbra status --json`, stopped with a signal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use umbra::node::Status;

/// A running `umbra node`; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub listen: SocketAddr,
    pub gateway: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fast timings every test node runs with.
pub const FAST: &str = "stabilize_ms = 100\nlink_timeout_ms = 1500\nhttp = \"127.0.0.1:0\"\n";

/// Start `umbra node` with a config file of fast timings; ports come from
/// the OS, and the node prints where it listens.
pub fn start(dir: &Path, listen: Option<SocketAddr>, bootstrap: Option<SocketAddr>) -> Proc {
    start_with(dir, listen, bootstrap, FAST)
}

/// [`start`] with this config file.
pub fn start_with(
    dir: &Path,
    listen: Option<SocketAddr>,
    bootstrap: Option<SocketAddr>,
    config_text: &str,
) -> Proc {
    start_logged(dir, listen, bootstrap, config_text, None)
}

/// [`start_with`], its log (standard error) going to `log`.
pub fn start_logged(
    dir: &Path,
    listen: Option<SocketAddr>,
    bootstrap: Option<SocketAddr>,
    config_text: &str,
    log: Option<&Path>,
) -> Proc {
    let config = dir.join("umbra.toml");
    std::fs::write(&config, config_text).expect("config written");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umbra"));
    cmd.arg("node")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(listen.map_or("127.0.0.1:0".to_string(), |a| a.to_string()));
    if let Some(b) = bootstrap {
        cmd.arg("--bootstrap").arg(b.to_string());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("a log file")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("umbra node starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut read = || {
        let mut line = String::new();
        lines
            .read_line(&mut line)
            .expect("node prints its addresses");
        line.trim().to_string()
    };
    let listen = read()
        .strip_prefix("listening ")
        .expect("listening line")
        .parse()
        .expect("an address");
    let gateway = read()
        .strip_prefix("gateway ")
        .expect("gateway line")
        .to_string();
    Proc {
        child,
        listen,
        gateway,
    }
}

/// `umbra status --json`, as a script would run it.
pub fn status(gateway: &str) -> Result<Status, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["status", "--json", "--gateway", gateway])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Wait, polling, until `check` holds; panic with its last complaint after
/// `limit`.
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => {
                // Shown with a failing test's output: which waits were long.
                eprintln!("{what}: after {:.1} s", start.elapsed().as_secs_f64());
                return;
            }
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Each node's predecessor and successor list are right for the ring of
/// these nodes.
pub fn ring_correct(gateways: &[&str]) -> Result<(), String> {
    let statuses: Vec<Status> = gateways
        .iter()
        .map(|g| status(g))
        .collect::<Result<_, _>>()?;
    umbra::testnet::ring_correct(&statuses, umbra::node::Config::default().successors)
        .map_err(|e| format!("{e}; {}", ring_views(&statuses)))
}

/// Every node's view of the ring, and what it refused or cut off, for a
/// ring that does not settle: which side of a missing link is wrong.
pub fn ring_views(statuses: &[Status]) -> String {
    let short = |id: &str| id.get(..8).unwrap_or(id).to_string();
    let views: Vec<String> = statuses
        .iter()
        .map(|s| {
            format!(
                "{} pred {} succ [{}] refused {}/{}, mended {}, replicas refused {}, peers cut off {}",
                short(&s.id),
                s.predecessor.as_deref().map_or("-".into(), short),
                s.successors
                    .iter()
                    .map(|x| short(x))
                    .collect::<Vec<_>>()
                    .join(","),
                s.successor_lists_refused,
                s.tables_refused,
                s.successors_mended,
                s.replicas_refused,
                s.misbehaving_peers
            )
        })
        .collect();
    format!(
        "every node (successor lists/tables refused): {}",
        views.join("; ")
    )
}

/// A small tmpfs mounted for the length of a test (root only, as CI
/// runs), to fill up; unmounted when dropped.
pub struct Tmpfs {
    pub path: std::path::PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (this test needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Run `umbra ARGS` to its end: its standard output, or its error.
pub fn umbra(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
