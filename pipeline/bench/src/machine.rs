//! The machine a benchmark ran on, and what the benchmark cost it.
//!
//! In: `/proc/cpuinfo`, `/proc/meminfo`, `/proc/self/status`,
//! `/proc/stat`, `/sys/kernel/mm/transparent_hugepage/enabled`. Out:
//! cores, CPU model, memory, the transparent huge page mode, the CPU time
//! the whole machine has spent, and this process's peak resident memory.
//!
//! Guarantees: nothing fails: what cannot be read is reported as unknown
//! (the core count falls back to the parallelism the OS grants).

use serde::Serialize;

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical cores (`processor` entries of `/proc/cpuinfo`).
    pub cores: usize,
    /// The CPU's model name.
    pub cpu_model: String,
    /// Physical memory, bytes.
    pub memory_bytes: Option<u64>,
    /// The kernel's transparent huge page mode (`always`, `madvise` or
    /// `never`). The kernel's share of the roles' CPU depends on it: in
    /// `madvise` mode mimalloc still asks for huge pages for its arenas,
    /// and the first write to each zeroes 2 MiB (`clear_page_erms` was a
    /// quarter of a fresh draining ingester's profile).
    pub transparent_huge_pages: Option<String>,
}

impl Machine {
    /// The machine this process runs on.
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (cores, cpu_model) = parse_cpuinfo(&cpuinfo);
        let cores = if cores > 0 {
            cores
        } else {
            std::thread::available_parallelism().map_or(0, usize::from)
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cores,
            cpu_model: cpu_model.unwrap_or_else(|| "unknown".into()),
            memory_bytes: kib_field(&meminfo, "MemTotal:"),
            transparent_huge_pages: std::fs::read_to_string(
                "/sys/kernel/mm/transparent_hugepage/enabled",
            )
            .ok()
            .and_then(|text| chosen(&text)),
        }
    }
}

/// Core count and model name of a `/proc/cpuinfo` text.
fn parse_cpuinfo(text: &str) -> (usize, Option<String>) {
    let field = |line: &str, name: &str| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    };
    let cores = text
        .lines()
        .filter(|l| field(l, "processor").is_some())
        .count();
    let model = text.lines().find_map(|l| field(l, "model name"));
    (cores, model)
}

/// The chosen one of a sysfs setting's choices, `a [b] c`: `b`.
fn chosen(text: &str) -> Option<String> {
    let (_, rest) = text.split_once('[')?;
    let (choice, _) = rest.split_once(']')?;
    Some(choice.to_owned())
}

/// A `Name:   123 kB` field of a `/proc` text, in bytes.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The most resident memory this process has used so far (`VmHWM`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// The CPU time the whole machine has spent so far, every core, from the
/// `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// Seconds running anything: user, nice, system, irq and softirq
    /// (guest time is part of user).
    pub busy_seconds: f64,
    /// Seconds the host ran something else while this machine had work
    /// (`steal`).
    pub steal_seconds: f64,
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            busy_seconds: self.busy_seconds - earlier.busy_seconds,
            steal_seconds: self.steal_seconds - earlier.steal_seconds,
        }
    }
}

/// The machine's [`CpuTime`] so far; `None` when `/proc/stat` cannot be
/// read.
pub fn cpu_time() -> Option<CpuTime> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// [`CpuTime`] of a `/proc/stat` text: its `cpu` line is `cpu user nice
/// system idle iowait irq softirq steal guest guest_nice`, in ticks.
fn parse_stat_cpu(text: &str) -> Option<CpuTime> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let tick =
        |n: usize| ticks.get(n).copied().unwrap_or(0) as f64 / crate::process::TICKS_PER_SECOND;
    Some(CpuTime {
        busy_seconds: tick(0) + tick(1) + tick(2) + tick(5) + tick(6),
        steal_seconds: tick(7),
    })
}

/// Bytes as MiB, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cores_and_model_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpuinfo(text), (2, Some("AMD EPYC 7B13".into())));
        assert_eq!(parse_cpuinfo(""), (0, None));
    }

    #[test]
    fn reads_the_chosen_setting() {
        assert_eq!(
            chosen("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(chosen("[always] madvise never").as_deref(), Some("always"));
        assert_eq!(chosen("always madvise never"), None);
        assert_eq!(chosen(""), None);
    }

    #[test]
    fn reads_the_machines_cpu_time() {
        let stat =
            "cpu  1000 20 300 5000 40 5 6 7 0 0\ncpu0 500 10 150 2500 20 2 3 3 0 0\nintr 1\n";
        let t = parse_stat_cpu(stat).expect("a cpu line");
        assert!((t.busy_seconds - 13.31).abs() < 1e-9, "{t:?}");
        assert!((t.steal_seconds - 0.07).abs() < 1e-9, "{t:?}");
        assert_eq!(parse_stat_cpu("cpu0 1 2 3\n"), None);
        assert_eq!(parse_stat_cpu("cpu  1 x 3\n"), None);
        assert!(cpu_time().is_some_and(|t| t.busy_seconds > 0.0));
    }

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tskein-bench\nVmHWM:\t  204800 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(200 * 1024 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
