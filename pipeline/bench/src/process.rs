//! skein's roles as processes of their own, and what they cost.
//!
//! In: the `skein` binary, a role and a topology file. Out: a running
//! [`Role`] whose CPU time and memory are read from `/proc/<pid>`, and
//! whose Prometheus `/metrics` can be scraped.
//!
//! Guarantees: CPU time is the kernel's account of the process (user plus
//! system, every thread), so it holds on a noisy machine where wall-clock
//! throughput does not; a role is stopped (SIGKILL) when dropped, so a
//! failed benchmark leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on
/// every Linux architecture skein builds for).
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// A free port on 127.0.0.1, as `ip:port`.
pub fn free_addr() -> Result<String> {
    Ok(free_addrs::<1>()?[0].clone())
}

/// `N` distinct free local addresses: every port is held until all are
/// found, so the system cannot hand out the same one twice.
pub fn free_addrs<const N: usize>() -> Result<[String; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(addrs.try_into().expect("N addresses"))
}

/// The `skein` binary next to this one (`make bench` builds both).
pub fn skein_next_to_me() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating skein-bench")?;
    let skein = me.with_file_name("skein");
    if !skein.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p skein` (make bench does)",
            skein.display()
        );
    }
    Ok(skein)
}

/// CPU seconds (user + system) of a `/proc/<pid>/stat` text.
pub fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    usage_of_stat(stat).map(|u| u.cpu_seconds)
}

/// What a process has used so far, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU seconds, user + system, every thread.
    pub cpu_seconds: f64,
    /// Of which in the kernel (system time).
    pub system_seconds: f64,
    /// Page faults served without I/O (`minflt`): on first touch of memory,
    /// including memory handed back to the system and touched again.
    pub minor_faults: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;

    fn sub(self, earlier: Usage) -> Usage {
        Usage {
            cpu_seconds: self.cpu_seconds - earlier.cpu_seconds,
            system_seconds: self.system_seconds - earlier.system_seconds,
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
        }
    }
}

/// [`Usage`] of a `/proc/<pid>/stat` text.
pub fn usage_of_stat(stat: &str) -> Option<Usage> {
    // The command name, field 2, is in parentheses and may hold spaces:
    // count fields after its closing parenthesis (field 3 is the first).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let (minflt, utime, stime) = (field(10)?, field(14)?, field(15)?);
    Some(Usage {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        system_seconds: stime as f64 / TICKS_PER_SECOND,
        minor_faults: minflt,
    })
}

/// [`Usage`] of process `pid` so far.
fn usage_of_pid(pid: u32) -> Result<Usage> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    usage_of_stat(&stat).with_context(|| format!("parsing {path}"))
}

/// The value of the Prometheus sample `name` (with any labels) summed over
/// its series in an exposition text; 0 when absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One skein role running as a process.
pub struct Role {
    name: &'static str,
    child: Child,
    /// Its admin endpoint (`/metrics`, `/health`), `ip:port`.
    pub admin: String,
    log: PathBuf,
}

impl Role {
    /// Starts `skein <role> --config <config>`, whose admin endpoint the
    /// topology puts on `admin`, logging to `dir/<role>.log`, and waits
    /// until `/health` answers.
    pub async fn start(
        skein: &Path,
        role: &'static str,
        config: &Path,
        admin: String,
        dir: &Path,
    ) -> Result<Self> {
        let log = dir.join(format!("{role}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(skein)
            .arg(role)
            .arg("--config")
            .arg(config)
            .env("SKEIN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} {role}", skein.display()))?;
        let mut me = Self {
            name: role,
            child,
            admin,
            log,
        };
        me.healthy(Duration::from_secs(60)).await?;
        Ok(me)
    }

    async fn healthy(&mut self, wait: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + wait;
        let url = format!("http://{}/health", self.admin);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "skein {} exited ({status}) at start; its log, {}:\n{}",
                    self.name,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("skein {} did not answer {url} within {wait:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time and page faults so far.
    pub fn usage(&self) -> Result<Usage> {
        usage_of_pid(self.pid())
    }

    /// The most resident memory it has used so far (`VmHWM`), bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        crate::machine::kib_field(&status, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.admin);
        reqwest::get(&url)
            .await
            .with_context(|| format!("scraping {url}"))?
            .text()
            .await
            .with_context(|| format!("reading {url}"))
    }

    /// Suspends it (SIGSTOP): it uses no CPU until [`Role::resume`].
    pub fn suspend(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// Lets a suspended role run again (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        ensure!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
        Ok(())
    }

    /// Stops it (SIGKILL: what it cost is read before, nothing after).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tansu broker` on `addr` (`ip:port`), its storage
/// `sqlite://tansu.db` and its log `tansu.log` in `dir`.
pub fn spawn_tansu(addr: &str, dir: &Path) -> Result<Child> {
    let url = format!("tcp://{addr}");
    let log = std::fs::File::create(dir.join("tansu.log"))?;
    Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tansu (is it installed? `make up` installs it)")
}

/// The index tansu 0.6's sqlite schema lacks: its fetch reads each
/// record's headers with a query on `header (topition, offset_id)`, a
/// table with no index, so every record fetched scanned every header the
/// broker ever stored (two per skein message), and consuming slowed down as
/// the broker filled. `deploy/local/up.sh` adds the same index.
pub const TANSU_HEADER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS skein_header_record ON header (topition, offset_id)";

/// Adds [`TANSU_HEADER_INDEX`] to the storage of the tansu broker in
/// `dir` (started with `sqlite://tansu.db`, and listening: it creates its
/// tables before it listens), with the `sqlite3` shell `make up` installs.
pub fn index_tansu(dir: &Path) -> Result<()> {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000", "tansu.db", TANSU_HEADER_INDEX])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running sqlite3 (is it installed? `make up` installs it)")?;
    if !out.status.success() {
        bail!(
            "indexing tansu's storage in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: &str, within: Duration) -> Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > within {
            bail!("nothing listened on {addr} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A tansu broker of the benchmark's own: a fresh sqlite file in `dir`, on
/// a free port. A broker's sqlite storage slows down as it fills (the local
/// stack's keeps every test run's topics), so the figures of a fresh one
/// are the ones that reproduce.
pub struct Broker {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: Child,
}

impl Broker {
    /// Starts `tansu broker` with storage `sqlite://tansu.db` in `dir`.
    pub async fn start(dir: &Path) -> Result<Self> {
        let addr = free_addr()?;
        let _ = std::fs::remove_file(dir.join("tansu.db"));
        let child = spawn_tansu(&addr, dir)?;
        let broker = Self { addr, child };
        wait_listening(&broker.addr, Duration::from_secs(30)).await?;
        index_tansu(dir)?;
        Ok(broker)
    }

    /// CPU seconds it has used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        Ok(usage_of_pid(self.child.id())?.cpu_seconds)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds a role used over a stretch of a benchmark.
pub struct CpuMeter<'a> {
    role: &'a Role,
    at_start: Usage,
    started: Instant,
}

impl<'a> CpuMeter<'a> {
    /// Starts counting now.
    pub fn start(role: &'a Role) -> Result<Self> {
        Ok(Self {
            role,
            at_start: role.usage()?,
            started: Instant::now(),
        })
    }

    /// What was used since the start, and the wall-clock time elapsed.
    pub fn read(&self) -> Result<(Usage, Duration)> {
        Ok((self.role.usage()? - self.at_start, self.started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        // Fields 14 and 15 (utime, stime) are 250 and 50 ticks.
        let stat = "4242 (skein coll (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        // Field 10 (minflt) is 1.
        assert_eq!(
            usage_of_stat(stat),
            Some(Usage {
                cpu_seconds: 3.0,
                system_seconds: 0.5,
                minor_faults: 1
            })
        );
        assert_eq!(cpu_seconds_of_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_seconds_of_stat(&own).is_some());
    }

    #[test]
    fn metric_samples_are_summed_over_labels() {
        let text = "# HELP skein_x help\n# TYPE skein_x counter\n\
                    skein_x{transport=\"grpc\"} 3\nskein_x{transport=\"http\"} 4.5\n\
                    skein_x_sum 100\nskein_y 7\n";
        assert_eq!(metric_sum(text, "skein_x"), 7.5);
        assert_eq!(metric_sum(text, "skein_x_sum"), 100.0);
        assert_eq!(metric_sum(text, "skein_y"), 7.0);
        assert_eq!(metric_sum(text, "skein_z"), 0.0);
    }
}
