//! A network of hosts on one machine: network namespaces joined by veth
//! pairs to a bridge, with private addresses, and NAT routers made with
//! nftables. Everything lives inside namespaces this module creates (the
//! bridge too, in a namespace of its own), so the machine's own network is
//! never touched; dropping the [`Lab`] removes them all, on failure too.
//! Needs `ip` (iproute2) and `nft` (nftables), and root: CI runs as root;
//! elsewhere [`in_own_namespaces`] runs the test again as root of a user
//! namespace of its own, where the kernel allows unprivileged ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Namespaces of this test process start with this, then the pid.
const PREFIX: &str = "umbra-lab";
/// Set in a test run again inside a user namespace of its own.
const INSIDE: &str = "UMBRA_LAB_USER_NAMESPACE";

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Call first in a test that builds a [`Lab`]. As root it returns false
/// and the test goes on. Otherwise it runs the test `name` again, alone, in
/// a new user, network and mount namespace where this user is root (`unshare
/// --user --map-root-user --net --mount`, with a private /run for `ip
/// netns`), and returns true once that run passed; it panics, saying why,
/// if it failed or the namespaces could not be made.
pub fn in_own_namespaces(name: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var_os(INSIDE).is_some() {
        panic!("running inside a user namespace, yet not root there");
    }
    let exe = std::env::current_exe().expect("test binary");
    eprintln!("{name}: not root; running again in a user namespace of its own");
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "--fork"])
        .args([
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status();
    match status {
        Err(e) => panic!(
            "{name} needs root, or `unshare` for an unprivileged user namespace, which \
             cannot run here ({e}): run it as root (CI does) or with sudo"
        ),
        Ok(s) if !s.success() => panic!(
            "{name} failed inside an unprivileged user namespace ({s}); if unshare said \
             it could not make one, this kernel forbids them: run the test as root"
        ),
        Ok(_) => true,
    }
}

pub struct Lab {
    /// `PREFIX-PID-`: every namespace of this lab starts with it.
    stem: String,
    namespaces: Vec<String>,
    /// The namespace holding the bridge every host plugs into.
    switch: String,
    next_port: usize,
}

/// A host of the lab: a namespace with one address on the bridge, or
/// behind a NAT router.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where a system tool lives: on the PATH, or in the sbin directories a
/// user's PATH often lacks.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn ip(args: &[&str]) -> Result<Output, String> {
    run(Command::new(tool("ip")).args(args))
}

/// Whether `pid` names a running process.
fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Remove namespaces left by lab runs whose process is gone (a test killed
/// before it could clean up).
fn remove_stale() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !alive(pid) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Lab {
    /// A lab with an empty switch; `tag` keeps the namespaces of tests
    /// running at once apart. Fails, saying why, when namespaces cannot be
    /// made here.
    pub fn new(tag: &str) -> Result<Lab, String> {
        for name in ["ip", "nft"] {
            if Command::new(tool(name))
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
            {
                return Err(format!(
                    "`{name}` is not installed: the many-host test needs iproute2 and nftables \
                     (scripts/test installs them)"
                ));
            }
        }
        remove_stale();
        let mut lab = Lab {
            stem: format!("{PREFIX}-{}-{tag}-", std::process::id()),
            namespaces: Vec::new(),
            switch: String::new(),
            next_port: 0,
        };
        lab.switch = lab.namespace("switch").map_err(|e| {
            format!(
                "cannot create a network namespace ({e}). The many-host test needs root, or \
                 CAP_SYS_ADMIN and CAP_NET_ADMIN: run it as root (CI does) or with sudo"
            )
        })?;
        let sw = lab.switch.clone();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// A new namespace with its loopback up.
    fn namespace(&mut self, name: &str) -> Result<String, String> {
        let ns = format!("{}{name}", self.stem);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Plug `ns` into the switch as `dev`, with `cidr` on it.
    fn plug(&mut self, ns: &str, dev: &str, cidr: &str) -> Result<(), String> {
        let port = format!("p{}", self.next_port);
        self.next_port += 1;
        let sw = self.switch.clone();
        ip(&[
            "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", &port, "netns", &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"]).map(drop)
    }

    /// A host on the switch with address `cidr` (for example
    /// `10.77.0.10/24`).
    pub fn host(&mut self, name: &str, cidr: &str) -> Result<Host, String> {
        let ns = self.namespace(name)?;
        self.plug(&ns, "eth0", cidr)?;
        Ok(Host {
            ns,
            ip: cidr.split('/').next().unwrap_or(cidr).to_string(),
        })
    }

    /// A NAT router on the switch at `wan_cidr`, with a private network
    /// `lan_cidr` (its own address on it, for example `192.168.77.1/24`)
    /// behind it: masquerade outbound, forward only replies inbound (a
    /// home router: outbound UDP only), and UDP mappings forgotten after
    /// `udp_timeout_s` seconds of silence. Returns the router's namespace.
    pub fn nat_router(
        &mut self,
        name: &str,
        wan_cidr: &str,
        lan_cidr: &str,
        udp_timeout_s: u32,
    ) -> Result<String, String> {
        let ns = self.namespace(name)?;
        self.plug(&ns, "wan", wan_cidr)?;
        ip(&["-n", &ns, "link", "add", "lan", "type", "bridge"])?;
        ip(&["-n", &ns, "addr", "add", lan_cidr, "dev", "lan"])?;
        ip(&["-n", &ns, "link", "set", "lan", "up"])?;
        self.sysctl(&ns, "net.ipv4.ip_forward", "1")?;
        let rules = "\
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname \"wan\" masquerade; }
}
table inet filter {
  chain forwarding {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
  }
  chain incoming {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname { \"lo\", \"lan\" } accept
  }
}
";
        let mut nft = Command::new(tool("ip"));
        nft.args(["netns", "exec", &ns])
            .arg(tool("nft"))
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = nft.spawn().map_err(|e| format!("nft: {e}"))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().ok_or("nft: no stdin")?;
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| format!("nft: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft refused the NAT rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // The conntrack table exists once a rule uses it; its timeouts are
        // per namespace.
        for key in [
            "net.netfilter.nf_conntrack_udp_timeout",
            "net.netfilter.nf_conntrack_udp_timeout_stream",
        ] {
            self.exec(
                &ns,
                &["sysctl", "-q", "-w", &format!("{key}={udp_timeout_s}")],
            )?;
        }
        Ok(ns)
    }

    /// A host behind the NAT router `router`, at `cidr` on its private
    /// network, routing everything through `gateway`.
    pub fn host_behind(
        &mut self,
        name: &str,
        router: &str,
        cidr: &str,
        gateway: &str,
    ) -> Result<Host, String> {
        let ns = self.namespace(name)?;
        let port = format!("p{}", self.next_port);
        self.next_port += 1;
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
            router,
        ])?;
        ip(&["-n", router, "link", "set", &port, "master", "lan", "up"])?;
        ip(&["-n", &ns, "addr", "add", cidr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", gateway])?;
        Ok(Host {
            ns,
            ip: cidr.split('/').next().unwrap_or(cidr).to_string(),
        })
    }

    /// Set a sysctl of the namespace `ns`, through its /proc/sys (which
    /// `ip netns exec` mounts for it).
    fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let script = format!("echo {value} > {path}");
        self.exec(ns, &["sh", "-c", &script]).map(drop)
    }

    /// A command to run inside `ns`.
    pub fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(tool("ip"));
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Run a command inside `ns` to completion.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<Output, String> {
        let (program, rest) = args.split_first().ok_or("no command")?;
        run(self.command(ns, program).args(rest))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace takes its interfaces (and their veth peers)
        // with it; processes must be gone first, which their owners see to.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab: cannot remove namespace {ns}: {e}");
            }
        }
    }
}
