//! Latency statistics.
//!
//! In: the durations of a run of requests. Out: their count, p50, p99,
//! mean, minimum and maximum.
//!
//! Guarantees: percentiles are nearest-rank (the smallest sample with at
//! least the given share of samples at or below it), so they are always
//! one of the measured values.

use std::time::Duration;

/// What a run of requests measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Requests measured.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Mean.
    pub mean: Duration,
    /// Fastest.
    pub min: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Summary {
    /// The summary of `samples` (not empty).
    pub fn of(samples: &[Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples to summarise");
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        Self {
            count: sorted.len(),
            p50: percentile(&sorted, 0.50),
            p99: percentile(&sorted, 0.99),
            mean: total / u32::try_from(sorted.len()).unwrap_or(u32::MAX),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// Nearest-rank percentile `q` (0 < q <= 1) of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, as the reports show them.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=200).rev().collect();
        let s = Summary::of(&millis(&samples));
        assert_eq!(s.count, 200);
        assert_eq!(s.p50, Duration::from_millis(100));
        assert_eq!(s.p99, Duration::from_millis(198));
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(200));
        assert_eq!(s.mean, Duration::from_micros(100_500));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = Summary::of(&millis(&[7]));
        assert_eq!((s.p50, s.p99, s.mean), (s.min, s.max, s.min));
        assert_eq!(ms(s.p50), 7.0);
    }
}
