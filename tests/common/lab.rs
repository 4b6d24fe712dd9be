//! A network of hosts on one machine: network namespaces joined by veth
//! pairs to a bridge, with private addresses, and NAT routers made with
//! nftables. Everything lives inside namespaces this module creates (the
//! bridge too, in a namespace of its own), so the machine's own network is
//! never touched; dropping the [`Lab`] removes them all, on failure too.
//! Needs root (CI runs as root) and `ip` (iproute2) and `nft` (nftables).

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Namespaces of this test process start with this, then the pid.
const PREFIX: &str = "umbra-lab";

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

fn ip(args: &[&str]) -> Result<Output, String> {
    run(Command::new("ip").args(args))
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
        for tool in ["ip", "nft"] {
            if Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
            {
                return Err(format!(
                    "`{tool}` is not installed: the many-host test needs iproute2 and nftables \
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
        self.exec(&ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
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
        let mut nft = Command::new("ip");
        nft.args(["netns", "exec", &ns, "nft", "-f", "-"])
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

    /// A command to run inside `ns`.
    pub fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
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
