//! Start-up and the running server's handle: validate the config, bind every shard's control
//! listeners (SO_REUSEPORT), sweep stray temporary uploads, start the helper pool and the pinned
//! shard threads; `Server` reports their addresses, drains or stops them, and hands them a
//! reloaded configuration.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use socket2::{Domain, Socket, Type};

use super::fsworker::{Mailbox, Pool, Workers};
use super::limits::{Caps, Limits};
use super::logins::{Accounts, LoginPool};
use super::{Arrival, Control, Shard, Shared};
use crate::auth::Users;
use crate::config::Config;
use crate::proto::path::VirtualPath;
use crate::proto::session::{Policy, TlsPolicy};
use crate::shard::Ring;
use crate::vfs::Root;

/// A running server: shard threads plus the helper pool.
pub struct Server {
    threads: Vec<JoinHandle<()>>,
    workers: Workers,
    login_workers: Workers,
    wakers: Vec<Arc<EventFd>>,
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
    implicit_addrs: Vec<SocketAddr>,
    limits: Arc<Limits>,
    /// Where each shard hears of a drain or a reload.
    controls: Vec<Mailbox<Control>>,
    accounts: Arc<Accounts>,
    /// The configuration new sessions get (replaced by `reload`).
    running: Mutex<Arc<Config>>,
}

impl Server {
    /// The bound control addresses (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The bound implicit TLS addresses (`implicit_tls_listen`), with their real ports.
    pub fn implicit_tls_addrs(&self) -> Vec<SocketAddr> {
        self.implicit_addrs.clone()
    }

    /// Control sessions each shard holds now.
    pub fn sessions_per_shard(&self) -> Vec<usize> {
        self.limits.sessions_per_shard()
    }

    /// Sessions in all, and transfers running (as of each shard's last tick, at most 1 s old).
    pub fn activity(&self) -> (usize, usize) {
        self.limits.activity()
    }

    /// Begin a graceful stop: every shard closes its listeners at once, tells its idle sessions
    /// 421 and closes them, lets running transfers go on until `grace` has passed, then closes
    /// the rest (a cut-off upload is discarded: the old file stays, no temporary file is left).
    /// The shards exit when their last session is gone; `wait` returns then.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for c in &self.controls {
            let _ = c.post(Control::Drain { deadline });
        }
    }

    /// Close every session now and let the shards exit.
    pub fn stop_now(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.write(1);
        }
    }

    /// Whether every shard has exited.
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Give new sessions `config` (users file, limits, banner, root, passive address, timeouts,
    /// data path, TLS certificate and key); running sessions keep what they started with and are never dropped. Returns
    /// the keys that changed but need a restart (they keep their running values). An error
    /// (a root or users file that cannot be used) leaves the running configuration in force.
    pub fn reload(&self, mut config: Config) -> Result<Vec<&'static str>, String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // Settings that shape the threads, sockets and port slices keep their running values.
        let mut restart = Vec::new();
        let mut keep = |changed: bool, key: &'static str| {
            if changed {
                restart.push(key);
            }
        };
        keep(config.listen != running.listen, "listen");
        keep(
            config.implicit_tls_listen != running.implicit_tls_listen,
            "implicit_tls_listen",
        );
        keep(config.shards != running.shards, "shards");
        keep(config.pasv_ports != running.pasv_ports, "pasv_ports");
        keep(config.io_backend != running.io_backend, "io");
        keep(config.pin_shards != running.pin_shards, "no_pin");
        keep(config.fs_workers != running.fs_workers, "fs_workers");
        keep(
            config.login_workers != running.login_workers,
            "login_workers",
        );
        keep(config.run_as != running.run_as, "user");
        keep(config.allow_root != running.allow_root, "allow_root");
        keep(config.landlock != running.landlock, "no_landlock");
        config.listen.clone_from(&running.listen);
        config
            .implicit_tls_listen
            .clone_from(&running.implicit_tls_listen);
        config.shards = running.shards;
        config.pasv_ports = running.pasv_ports;
        config.io_backend = running.io_backend;
        config.pin_shards = running.pin_shards;
        config.fs_workers = running.fs_workers;
        config.login_workers = running.login_workers;
        config.run_as.clone_from(&running.run_as);
        config.allow_root = running.allow_root;
        config.landlock = running.landlock;
        let prepared = prepare(&config).map_err(|e| e.to_string())?;
        self.accounts.replace(prepared.users);
        self.limits.set_caps(Caps::of(&config));
        let config = Arc::new(config);
        for c in &self.controls {
            let _ = c.post(Control::Reload {
                config: Arc::clone(&config),
                policy: prepared.policy.clone(),
                root: Arc::clone(&prepared.root),
                tls: prepared.tls.clone(),
            });
        }
        *running = config;
        Ok(restart)
    }

    /// Stop every shard and wait for them.
    pub fn stop(self) {
        self.stop_now();
        self.wait();
    }

    /// Block until the shards exit (they run until stopped or drained), then until the helper
    /// pool has run the jobs they left (removing cut-off uploads' temporary files).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
        drop(self.controls);
        self.workers.join();
        self.login_workers.join();
    }
}

/// What start-up and every reload derive from a configuration: the anonymous root, the users
/// and the session policy. Anything that cannot be used is an error here, before it is used.
struct Prepared {
    root: Arc<Root>,
    users: Option<Users>,
    policy: Policy,
    tls: Option<Arc<rustls::ServerConfig>>,
}

fn prepare(config: &Config) -> io::Result<Prepared> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let root = Arc::new(Root::open(&config.root)?);
    let users = match &config.users_file {
        Some(path) => Some(
            Users::load(path)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
        ),
        None => None,
    };
    let anonymous_upload = match &config.anonymous_upload {
        Some(dir) => Some(VirtualPath::root().join(dir.as_bytes()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("anonymous_upload: {e}"),
            )
        })?),
        None => None,
    };
    if let Some(dir) = &anonymous_upload {
        let e = root
            .stat(dir)
            .map_err(|e| io::Error::other(format!("anonymous_upload {dir:?}: {e}")))?;
        if e.kind != crate::proto::entry::FileKind::Dir {
            return Err(io::Error::other(
                "anonymous_upload must name a directory inside the root",
            ));
        }
    }
    let tls = config
        .tls_config()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let policy = Policy {
        allow_anonymous: config.allow_anonymous,
        anonymous_upload,
        force_dot_files: config.force_dot_files,
        tls: TlsPolicy {
            available: tls.is_some(),
            anonymous: config.tls_anonymous,
            named: config.tls_named_requirement(),
        },
    };
    Ok(Prepared {
        root,
        users,
        policy,
        tls,
    })
}

/// Check everything start-up checks without binding anything (`--check-config`).
pub fn check(config: &Config) -> io::Result<()> {
    prepare(config).map(|_| ())
}

/// Bind every listener (one per shard per address, SO_REUSEPORT), start the pool and the shards.
pub fn start(config: Config) -> io::Result<Server> {
    bind(config)?.start()
}

/// A configuration checked and its listeners bound, with no thread started yet: what `main`
/// holds while it gives up root and confines the process (`privileges`), before `start`.
pub struct Bound {
    config: Config,
    prepared: Prepared,
    /// Each shard's listeners: the `listen` ones, then the `implicit_tls_listen` ones.
    per_shard: Vec<Vec<TcpListener>>,
    addrs: Vec<SocketAddr>,
    implicit_addrs: Vec<SocketAddr>,
}

/// Check `config`, open the root and read the users file, and bind every listener (one per
/// shard per address, SO_REUSEPORT). Starts no thread.
pub fn bind(config: Config) -> io::Result<Bound> {
    let prepared = prepare(&config)?;
    if config.io_backend == crate::shard::Backend::IoUring {
        Ring::probe()?;
    }
    let mut per_shard: Vec<Vec<TcpListener>> = (0..config.shards).map(|_| Vec::new()).collect();
    let mut bind_all = |wanted: &[SocketAddr]| -> io::Result<Vec<SocketAddr>> {
        let mut addrs = Vec::new();
        for want in wanted {
            let mut addr = *want;
            for listeners in per_shard.iter_mut() {
                let l = bind_control(addr)?;
                addr = l.local_addr()?;
                listeners.push(l);
            }
            addrs.push(addr);
        }
        Ok(addrs)
    };
    let addrs = bind_all(&config.listen)?;
    let implicit_addrs = bind_all(&config.implicit_tls_listen)?;
    Ok(Bound {
        config,
        prepared,
        per_shard,
        addrs,
        implicit_addrs,
    })
}

impl Bound {
    /// The configuration being served.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The named users as loaded at start-up.
    pub fn users(&self) -> Option<&Users> {
        self.prepared.users.as_ref()
    }

    /// Start the helper pool and the shards on the bound listeners.
    pub fn start(self) -> io::Result<Server> {
        spawn(self)
    }
}

fn spawn(bound: Bound) -> io::Result<Server> {
    let Bound {
        config,
        prepared:
            Prepared {
                root,
                users,
                policy,
                tls,
            },
        per_shard,
        addrs,
        implicit_addrs,
    } = bound;
    let shards = config.shards;
    // In each shard's list the implicit TLS listeners come after the plain ones.
    let implicit_from = config.listen.len();
    let mut mailboxes = Vec::new();
    let mut inboxes = Vec::new();
    let mut doors = Vec::new();
    let mut controls = Vec::new();
    for _ in 0..shards {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        mailboxes.push(Mailbox {
            tx,
            wake: Arc::clone(&wake),
        });
        let (arrive_tx, arrive_rx) = crossbeam_channel::unbounded();
        doors.push(Mailbox {
            tx: arrive_tx,
            wake: Arc::clone(&wake),
        });
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        controls.push(Mailbox {
            tx: control_tx,
            wake: Arc::clone(&wake),
        });
        inboxes.push((rx, arrive_rx, control_rx, wake));
    }
    let doors: Arc<[Mailbox<Arrival>]> = doors.into();
    let wakers: Vec<Arc<EventFd>> = inboxes.iter().map(|(.., w)| Arc::clone(w)).collect();
    // Temporary files of uploads cut off by a crash are hidden from every command; a background
    // sweep removes those written before this start, so a large tree does not delay listening.
    let mut sweep_roots = vec![config.root.clone()];
    if let Some(users) = &users {
        sweep_roots.extend(users.iter().map(|u| u.root.clone()));
    }
    sweep_temps(sweep_roots, file_clock_now())?;
    let accounts = Arc::new(Accounts::new(users));
    let limits = Arc::new(Limits::new(Caps::of(&config), shards));
    let (logins, login_workers) = LoginPool::start(
        config.login_workers,
        mailboxes.clone(),
        Arc::clone(&accounts),
        Arc::clone(&limits),
    )?;
    let (pool, workers) = Pool::start(config.fs_workers, config.fs_queue_max, mailboxes)?;
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    let residency = config
        .residency
        .unwrap_or_else(crate::sys::fs::Residency::probe);
    if residency == crate::sys::fs::Residency::NowaitRead {
        log::info!("page-cache checks use preadv2(RWF_NOWAIT): this kernel has no cachestat(2)");
    }
    let ktls = probe_ktls(&config);
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
    let mut threads = Vec::new();
    for (index, (listeners, (done_rx, arrivals, control_rx, wake))) in
        per_shard.into_iter().zip(inboxes).enumerate()
    {
        let shared = Shared {
            config: Arc::clone(&config),
            tls: tls.clone(),
            policy: policy.clone(),
            root: Arc::clone(&root),
            pool: pool.clone(),
            logins: logins.clone(),
            stop: Arc::clone(&stop),
            limits: Arc::clone(&limits),
            doors: Arc::clone(&doors),
            residency,
            ktls,
        };
        let cpu = cpus.filter(|_| config.pin_shards).and_then(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .nth(index)
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("ringftpd-shard{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    let mut set = nix::sched::CpuSet::new();
                    if set.set(cpu).is_ok() {
                        // Pinning is best effort (it fails in restricted cpusets); the shard still works.
                        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                    }
                }
                let inbox = super::Inbox {
                    done: done_rx,
                    arrivals,
                    controls: control_rx,
                };
                match Shard::new(index, shared, listeners, implicit_from, inbox, wake) {
                    Ok(mut shard) => {
                        let _ = ready_tx.send(Ok(()));
                        if let Err(e) = shard.run() {
                            log::error!("shard {index} stopped: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("shard thread died"))??;
        threads.push(thread);
    }
    Ok(Server {
        threads,
        workers,
        login_workers,
        wakers,
        stop,
        addrs,
        implicit_addrs,
        limits,
        controls,
        accounts,
        running: Mutex::new(config),
    })
}

/// The time as file systems stamp it now. They take modification times from the coarse clock,
/// which lags `SystemTime::now()` by up to a tick: a file written just after a start stamped
/// with the fine clock could look older than the start. Anything written after this reading has
/// an mtime at or past it; a file written in the same tick before it is merely left for the
/// next start.
fn file_clock_now() -> std::time::SystemTime {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE).map_or_else(
        |_| std::time::SystemTime::now() - std::time::Duration::from_secs(1),
        |t| std::time::UNIX_EPOCH + std::time::Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32),
    )
}

/// Remove stray temporary uploads older than `started` under each root, on a thread of its own.
fn sweep_temps(roots: Vec<std::path::PathBuf>, started: std::time::SystemTime) -> io::Result<()> {
    thread::Builder::new()
        .name("ringftpd-sweep".into())
        .spawn(move || {
            let mut removed = 0;
            let mut seen = std::collections::HashSet::new();
            for dir in roots {
                if !seen.insert(dir.clone()) {
                    continue;
                }
                if let Ok(root) = Root::open(&dir) {
                    removed += root.clean_temps(started);
                }
            }
            if removed > 0 {
                log::info!("removed {removed} stray temporary upload file(s)");
            }
        })?;
    Ok(())
}

fn bind_control(addr: SocketAddr) -> io::Result<TcpListener> {
    // Non-blocking; socket2 adds SOCK_CLOEXEC.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
    if addr.is_ipv6() {
        // Let an IPv4 listener on the same port coexist with this one.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What kernel TLS offers here, probed once (a loopback pair per cipher, off the shards) and
/// logged, so an operator sees which path `PROT P` data takes. `None`: every `PROT P` data
/// connection stays in rustls. Probed whatever `ktls` says, so a reload that turns it on
/// finds the answer.
fn probe_ktls(config: &Config) -> Option<crate::sys::ktls::Support> {
    let probed = crate::sys::ktls::probe();
    let tls = config.tls_cert.is_some();
    match (&probed, config.ktls) {
        (Ok(support), true) if tls => log::info!("kTLS: available ({})", support.describe()),
        (Err(e), true) if tls => {
            log::info!("kTLS: unavailable ({e}), PROT P data goes through rustls in user space")
        }
        (_, false) if tls => {
            log::info!("kTLS: off (ktls = false), PROT P data goes through rustls in user space")
        }
        _ => {}
    }
    probed.ok()
}
