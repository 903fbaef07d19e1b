//! Throw-away network namespaces for tests and examples.
//!
//! Everything in synack that touches a TUN device or the kernel's own TCP stack does so inside a
//! namespace it made itself, so that no packet can leave the machine and no test can disturb the
//! host's interfaces, routes or firewall. [`NetNs`] is that namespace: created with a unique
//! name by `ip netns add`, and deleted again when the value is dropped, on every exit path
//! including a panicking test (drop runs during unwinding).
//!
//! Test support, behind the `netns` cargo feature (off by default): the crate's own tests,
//! the benchmark harness and the examples turn it on.

mod sys;

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Distinguishes the namespaces one process makes; with the pid this makes names unique on
/// the machine, even when test binaries run side by side.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where `ip netns add` bind-mounts a named namespace (iproute2's NETNS_RUN_DIR).
const NETNS_RUN_DIR: &str = "/var/run/netns";

/// A network namespace made for one test or example, deleted on drop (every exit path).
///
/// The namespace starts with only `lo`, which [`NetNs::new`] brings up. Processes started with
/// [`NetNs::command`] that are still running inside it when it is dropped are killed, so that
/// a failing test does not leave a kernel-side server behind.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `prefix-pid-counter` and brings its loopback up.
    pub fn new(prefix: &str) -> io::Result<NetNs> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on the guard owns the namespace: an error below still deletes it.
        let ns = NetNs { name };
        run_checked(ns.command("ip").args(["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A [`Command`] that runs `program` inside the namespace (`ip netns exec NAME program`).
    ///
    /// `ip netns exec` also remounts `/sys` for the namespace, so `/sys/class/net` in the child
    /// shows the namespace's own devices.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a fresh thread that has joined the namespace, e.g. to create a TUN device
    /// there, and returns its result.
    ///
    /// Only that thread changes namespace (`setns(2)` acts on the calling thread), and the
    /// thread ends with `f`: the caller's own threads never leave the namespace they are in.
    /// Sockets and devices made by `f` stay in the namespace after the thread exits. A panic in
    /// `f` is resumed on the caller's thread.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        run_in_named(&self.name, f)
    }

    /// Kills every process still running in the namespace (only processes started in it by
    /// this program can be there: the namespace is new and its name private).
    fn kill_remaining(&self) {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
        else {
            return;
        };
        let own = std::process::id();
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|&p| p > 1 && p as u32 != own)
        {
            sys::kill(pid);
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.kill_remaining();
        // Deleting unmounts the name; the kernel frees the namespace once its last user (a
        // still-open TUN fd, a dying process) lets go of it, and a non-persistent TUN device
        // goes with it.
        let status = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("synack: could not delete network namespace {}", self.name);
        }
    }
}

/// Runs `f` on a fresh thread that has joined the named network namespace
/// (`/var/run/netns/NAME`, as `ip netns add NAME` makes it), and returns its result: what
/// [`NetNs::run_in`] does, for a namespace this program did not make and does not own (a
/// relay's egress namespace, for instance).
///
/// A socket keeps the namespace it was created in for its whole life, so a socket made by
/// `f` and handed back routes through that namespace while the rest of the program stays
/// where it is. Only the new thread changes namespace (`setns(2)` acts on the calling
/// thread), and it ends with `f`. `NotFound` if no such namespace exists; `InvalidInput` for
/// a name that is not a plain file name. A panic in `f` is resumed on the caller's thread.
pub fn run_in_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    // A name is one path component: nothing that could point outside the run directory.
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a network namespace name"),
        ));
    }
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let ns = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {name} ({}): {e}", path.display()),
        )
    })?;
    let handle = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> io::Result<T> {
            sys::enter_netns(&ns)?;
            Ok(f())
        })?;
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a command to completion and turns a non-zero exit into an error that carries its
/// stderr.
pub fn run_checked(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Why this machine cannot run the TUN tests, or `None` if it can.
fn missing_tun_support() -> Option<String> {
    if !sys::is_root() {
        return Some("not running as root (TUN and `ip netns` need CAP_NET_ADMIN)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist".into());
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("the `ip` command (iproute2) is not available".into()),
    }
}

/// Whether this machine can run the TUN tests (root, /dev/net/tun, `ip` present).
///
/// Tests call it first and return early when it is false; it prints why. With `CI=true` in the
/// environment it panics instead, because CI must run them.
pub fn require_tun(test: &str) -> bool {
    match missing_tun_support() {
        None => true,
        Some(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: cannot run under CI=true: {reason}");
            }
            eprintln!("skipping {test}: {reason}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace_exists(name: &str) -> bool {
        Path::new(NETNS_RUN_DIR).join(name).exists()
    }

    #[test]
    fn namespace_is_made_and_deleted() {
        if !require_tun("namespace_is_made_and_deleted") {
            return;
        }
        let ns = NetNs::new("synack-nstest").unwrap();
        let name = ns.name().to_owned();
        assert!(name.starts_with(&format!("synack-nstest-{}-", std::process::id())));
        assert!(namespace_exists(&name));
        // Inside, only loopback exists, and it is up.
        let out = ns.command("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains("lo:") && links.contains("UP"), "{links}");
        drop(ns);
        assert!(!namespace_exists(&name));
    }

    #[test]
    fn names_are_unique() {
        if !require_tun("names_are_unique") {
            return;
        }
        let a = NetNs::new("synack-uniq").unwrap();
        let b = NetNs::new("synack-uniq").unwrap();
        assert_ne!(a.name(), b.name());
    }

    #[test]
    fn run_in_joins_the_namespace_only_on_its_thread() {
        if !require_tun("run_in_joins_the_namespace_only_on_its_thread") {
            return;
        }
        fn own_netns() -> std::path::PathBuf {
            // The calling thread's namespace (/proc/self would name the main thread's).
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        }
        let ns = NetNs::new("synack-runin").unwrap();
        let outside = own_netns();
        let inside = ns.run_in(own_netns).unwrap();
        assert_ne!(inside, outside);
        assert_eq!(own_netns(), outside);
        // The same namespace as `ip netns exec` enters.
        let out = ns
            .command("readlink")
            .arg("/proc/self/ns/net")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            inside.to_string_lossy()
        );
    }

    #[test]
    fn run_in_named_joins_a_namespace_by_name_and_checks_the_name() {
        if !require_tun("run_in_named_joins_a_namespace_by_name_and_checks_the_name") {
            return;
        }
        fn own_netns() -> std::path::PathBuf {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        }
        let ns = NetNs::new("synack-named").unwrap();
        let by_name = run_in_named(ns.name(), own_netns).unwrap();
        assert_eq!(by_name, ns.run_in(own_netns).unwrap());
        assert_ne!(by_name, own_netns());
        for bad in ["", ".", "..", "../etc", "a/b"] {
            let e = run_in_named(bad, || ()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let e = run_in_named("synack-no-such-namespace", || ()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn drop_kills_processes_left_inside() {
        if !require_tun("drop_kills_processes_left_inside") {
            return;
        }
        let ns = NetNs::new("synack-kill").unwrap();
        let mut child = ns.command("sleep").arg("300").spawn().unwrap();
        // Wait (bounded) until the sleeper has entered the namespace.
        let name = ns.name().to_owned();
        let mut seen = false;
        for _ in 0..100 {
            let out = Command::new("ip")
                .args(["netns", "pids", &name])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(seen, "the child never showed up in the namespace");
        drop(ns);
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep should have been killed");
    }
}
