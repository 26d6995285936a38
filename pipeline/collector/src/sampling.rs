//! Jaeger remote sampling, served from a strategies file.
//!
//! In: Jaeger's `strategies.json` (`collector.sampling.strategies_file`, the
//! format of Jaeger's `--sampling.strategies-file`), read at startup and
//! re-read every `reload_interval_ms`; without a file every service gets a
//! probabilistic strategy with `default_probability`. Out: `GET
//! /sampling?service=NAME` (agent style, `collector.sampling_http`) and `GET
//! /api/sampling?service=NAME` (collector style, `collector.jaeger_thrift_http`)
//! answer with the service's [`SamplingStrategyResponse`], in the JSON that
//! Jaeger's HTTP sampling handler writes.
//!
//! Guarantees: a strategy is chosen and merged by the rules of Jaeger's
//! file-based provider (`internal/sampling/samplingstrategy/file`); a file
//! that cannot be read or parsed fails startup with a message naming the
//! file, and one that becomes unreadable or invalid while running leaves the
//! last good strategies in force, with one warning per distinct problem.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::IntervalStream;
use tokio_util::sync::CancellationToken;

/// Sampling requests answered, by `outcome` (`ok`, `invalid`).
pub const SAMPLING_REQUESTS: &str = "skein_collector_sampling_requests_total";

/// Describes this module's metrics to the recorder.
pub fn describe() {
    metrics::describe_counter!(
        SAMPLING_REQUESTS,
        metrics::Unit::Count,
        "sampling strategy requests answered, by outcome"
    );
}

/// The strategy `type` of a probabilistic strategy in the file.
const PROBABILISTIC: &str = "probabilistic";
/// The strategy `type` of a rate-limiting strategy in the file.
const RATE_LIMITING: &str = "ratelimiting";
/// Jaeger's answer to a request without exactly one `service` (Go's
/// `http.Error` appends the newline).
const BAD_SERVICE: &str = "'service' parameter must be provided once\n";

// ---------------------------------------------------------------------------
// The response: Jaeger's `api_v2/sampling.proto`, serialised as Jaeger's HTTP
// handler does (gogo `jsonpb` with `EmitDefaults`, then the null strategies
// removed): fields in proto order, camelCase names, the enum by name, absent
// strategies omitted, every scalar of `operationSampling` present.
// ---------------------------------------------------------------------------

/// Which of the strategies a response carries (`api_v2.SamplingStrategyType`).
/// Serialised by name; the discriminants are the proto enum values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(i32)]
pub enum SamplingStrategyType {
    /// `PROBABILISTIC` (0); also set when only per-operation strategies apply.
    #[default]
    Probabilistic = 0,
    /// `RATE_LIMITING` (1).
    RateLimiting = 1,
}

/// Samples a fixed fraction of traces (`api_v2.ProbabilisticSamplingStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbabilisticSamplingStrategy {
    /// Probability that a trace is sampled, 0 to 1.
    #[serde(serialize_with = "go_float")]
    pub sampling_rate: f64,
}

/// Samples at most a number of traces per second
/// (`api_v2.RateLimitingSamplingStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSamplingStrategy {
    /// Traces per second.
    pub max_traces_per_second: i32,
}

/// The strategy of one operation (`api_v2.OperationSamplingStrategy`); only
/// probabilistic ones exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSamplingStrategy {
    /// The operation (span name).
    pub operation: String,
    /// Its strategy. The proto field is a message (nullable); the file
    /// provider always sets it.
    pub probabilistic_sampling: ProbabilisticSamplingStrategy,
}

/// Per-operation strategies of a service (`api_v2.PerOperationSamplingStrategies`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerOperationSamplingStrategies {
    /// Probability of operations without a strategy of their own.
    #[serde(serialize_with = "go_float")]
    pub default_sampling_probability: f64,
    /// Traces per second sampled per operation whatever the probability
    /// (always 0 from a file).
    #[serde(serialize_with = "go_float")]
    pub default_lower_bound_traces_per_second: f64,
    /// The operations' strategies.
    pub per_operation_strategies: Vec<OperationSamplingStrategy>,
    /// Upper bound (always 0 from a file; Jaeger writes it anyway).
    #[serde(serialize_with = "go_float")]
    pub default_upper_bound_traces_per_second: f64,
}

/// A service's sampling strategy (`api_v2.SamplingStrategyResponse`), as
/// served by `/sampling` and `/api/sampling`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingStrategyResponse {
    /// Which of `probabilisticSampling` and `rateLimitingSampling` is set.
    pub strategy_type: SamplingStrategyType,
    /// Set for a probabilistic strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic_sampling: Option<ProbabilisticSamplingStrategy>,
    /// Set for a rate-limiting strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiting_sampling: Option<RateLimitingSamplingStrategy>,
    /// Set when operations have strategies of their own; clients that
    /// understand it prefer it to the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_sampling: Option<PerOperationSamplingStrategies>,
}

impl SamplingStrategyResponse {
    /// A probabilistic strategy.
    pub fn probabilistic(sampling_rate: f64) -> Self {
        Self {
            strategy_type: SamplingStrategyType::Probabilistic,
            probabilistic_sampling: Some(ProbabilisticSamplingStrategy { sampling_rate }),
            ..Self::default()
        }
    }

    /// A rate-limiting strategy.
    pub fn rate_limiting(max_traces_per_second: i32) -> Self {
        Self {
            strategy_type: SamplingStrategyType::RateLimiting,
            rate_limiting_sampling: Some(RateLimitingSamplingStrategy {
                max_traces_per_second,
            }),
            ..Self::default()
        }
    }
}

/// Writes a double as Go's `encoding/json` (which Jaeger's handler uses)
/// does where it differs from serde_json: integral values without a fraction
/// (`1`, not `1.0`).
fn go_float<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

// ---------------------------------------------------------------------------
// The file: Jaeger's `strategy.go`. As Go's `encoding/json` does, unknown
// fields are ignored and `null` reads as the zero value.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(expecting = "a strategies object")]
struct FileStrategies {
    #[serde(default)]
    default_strategy: Option<FileServiceStrategy>,
    #[serde(default, deserialize_with = "null_as_default")]
    service_strategies: Vec<Option<FileServiceStrategy>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a service strategy object")]
struct FileServiceStrategy {
    #[serde(default, deserialize_with = "null_as_default")]
    service: String,
    #[serde(default, rename = "type", deserialize_with = "null_as_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    param: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    operation_strategies: Vec<Option<FileOperationStrategy>>,
}

#[derive(Deserialize)]
#[serde(expecting = "an operation strategy object")]
struct FileOperationStrategy {
    #[serde(default, deserialize_with = "null_as_default")]
    operation: String,
    #[serde(default, rename = "type", deserialize_with = "null_as_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    param: f64,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Strategies ready to serve.
#[derive(Debug, Clone, PartialEq)]
struct Store {
    default: SamplingStrategyResponse,
    services: HashMap<String, SamplingStrategyResponse>,
}

impl Store {
    /// Jaeger's `defaultStrategies`: every service probabilistic.
    fn defaults(default_probability: f64) -> Self {
        Self {
            default: SamplingStrategyResponse::probabilistic(default_probability),
            services: HashMap::new(),
        }
    }

    fn get(&self, service: &str) -> &SamplingStrategyResponse {
        self.services.get(service).unwrap_or(&self.default)
    }
}

/// A parsed file, with what was wrong but tolerated (Jaeger logs these).
#[derive(Debug)]
struct Parsed {
    store: Store,
    warnings: Vec<String>,
}

/// Parses a strategies file; the error is the problem, without the path.
fn parse(content: &[u8], default_probability: f64) -> Result<Parsed, String> {
    let file: Option<FileStrategies> =
        serde_json::from_slice(content).map_err(|e| e.to_string())?;
    let mut builder = Builder {
        default_probability,
        warnings: Vec::new(),
    };
    // A file holding `null` means no strategies, as in Jaeger.
    let store = match file {
        Some(file) => {
            check_nulls(&file)?;
            builder.store(&file)
        }
        None => Store::defaults(default_probability),
    };
    Ok(Parsed {
        store,
        warnings: builder.warnings,
    })
}

/// Jaeger dereferences every entry of the lists and panics on a `null` one;
/// here the file is invalid.
fn check_nulls(file: &FileStrategies) -> Result<(), String> {
    let operations = |what: &str, s: &FileServiceStrategy| match s
        .operation_strategies
        .iter()
        .position(Option::is_none)
    {
        Some(i) => Err(format!("{what}.operation_strategies[{i}] is null")),
        None => Ok(()),
    };
    if let Some(d) = &file.default_strategy {
        operations("default_strategy", d)?;
    }
    for (i, s) in file.service_strategies.iter().enumerate() {
        let what = format!("service_strategies[{i}]");
        match s {
            Some(s) => operations(&what, s)?,
            None => return Err(format!("{what} is null")),
        }
    }
    Ok(())
}

/// Jaeger's `parseStrategies` and the functions it calls.
struct Builder {
    default_probability: f64,
    warnings: Vec<String>,
}

impl Builder {
    fn store(&mut self, file: &FileStrategies) -> Store {
        let mut store = Store::defaults(self.default_probability);
        if let Some(d) = &file.default_strategy {
            store.default = self.service(d, "default_strategy");
        }
        for s in file.service_strategies.iter().flatten() {
            let what = format!("service {:?}", s.service);
            let mut response = self.service(s, &what);
            // A service gets the default strategy's per-operation strategies
            // too: all of them when it has none of its own (its own
            // probability, if probabilistic, becoming their default), or
            // those for operations it does not list.
            if let Some(defaults) = &store.default.operation_sampling {
                match &mut response.operation_sampling {
                    None => {
                        let mut operations = defaults.clone();
                        if let Some(p) = &response.probabilistic_sampling {
                            operations.default_sampling_probability = p.sampling_rate;
                        }
                        response.operation_sampling = Some(operations);
                    }
                    Some(own) => merge(
                        &mut own.per_operation_strategies,
                        &defaults.per_operation_strategies,
                    ),
                }
            }
            if store.services.insert(s.service.clone(), response).is_some() {
                self.warnings.push(format!(
                    "{what} is listed more than once; the last entry wins"
                ));
            }
        }
        store
    }

    /// `parseServiceStrategies`.
    fn service(&mut self, s: &FileServiceStrategy, what: &str) -> SamplingStrategyResponse {
        let mut response = self.strategy(&s.kind, s.param, what);
        if s.operation_strategies.is_empty() {
            return response;
        }
        let default_sampling_probability =
            match (response.strategy_type, &response.probabilistic_sampling) {
                (SamplingStrategyType::Probabilistic, Some(p)) => p.sampling_rate,
                _ => self.default_probability,
            };
        let mut operations = PerOperationSamplingStrategies {
            default_sampling_probability,
            ..PerOperationSamplingStrategies::default()
        };
        for op in s.operation_strategies.iter().flatten() {
            let what = format!("{what}, operation {:?}", op.operation);
            match self
                .strategy(&op.kind, op.param, &what)
                .probabilistic_sampling
            {
                Some(probabilistic_sampling) => {
                    operations
                        .per_operation_strategies
                        .push(OperationSamplingStrategy {
                            operation: op.operation.clone(),
                            probabilistic_sampling,
                        })
                }
                None => self.warnings.push(format!(
                    "{what}: operation strategies support only probabilistic sampling; \
                     ignored, the operation gets the default probability \
                     {default_sampling_probability}"
                )),
            }
        }
        response.operation_sampling = Some(operations);
        response
    }

    /// `parseStrategy`.
    fn strategy(&mut self, kind: &str, param: f64, what: &str) -> SamplingStrategyResponse {
        match kind {
            PROBABILISTIC => SamplingStrategyResponse::probabilistic(param),
            // Go's int32(float64): toward zero (saturating here).
            RATE_LIMITING => SamplingStrategyResponse::rate_limiting(param as i32),
            other => {
                self.warnings.push(format!(
                    "{what}: unknown strategy type {other:?} (expected {PROBABILISTIC:?} or \
                     {RATE_LIMITING:?}); using probabilistic sampling with the default \
                     probability {}",
                    self.default_probability
                ));
                SamplingStrategyResponse::probabilistic(self.default_probability)
            }
        }
    }
}

/// `mergePerOperationSamplingStrategies`: appends the default operations the
/// service does not list.
fn merge(own: &mut Vec<OperationSamplingStrategy>, defaults: &[OperationSamplingStrategy]) {
    let listed: HashSet<String> = own.iter().map(|o| o.operation.clone()).collect();
    own.extend(
        defaults
            .iter()
            .filter(|d| !listed.contains(&d.operation))
            .cloned(),
    );
}

fn read_problem(file: &Path, error: &std::io::Error) -> String {
    format!("cannot read strategies file {}: {error}", file.display())
}

fn parse_problem(file: &Path, problem: &str) -> String {
    format!("invalid strategies file {}: {problem}", file.display())
}

fn log_warnings(file: &Path, warnings: &[String]) {
    for warning in warnings {
        tracing::warn!(file = %file.display(), "sampling strategies: {warning}");
    }
}

// ---------------------------------------------------------------------------
// The strategies in force, and their reloading.
// ---------------------------------------------------------------------------

/// The sampling strategies in force, reloaded from the strategies file.
#[derive(Clone)]
pub struct Strategies {
    inner: Arc<Inner>,
}

struct Inner {
    /// The strategies file, if one is configured.
    file: Option<PathBuf>,
    reload_interval: Duration,
    default_probability: f64,
    /// What the file held at startup.
    loaded: Vec<u8>,
    current: RwLock<Arc<Store>>,
}

impl Strategies {
    /// Loads the configured strategies (or the default one). Fails when the
    /// file cannot be read or is not a strategies file.
    pub fn load(config: &skein_config::Sampling) -> crate::Result<Self> {
        let p = config.default_probability;
        if config.strategies_file.is_empty() {
            tracing::info!(
                default_probability = p,
                "no sampling strategies file, every service gets the default probability"
            );
            return Ok(Self::new(None, config, Vec::new(), Store::defaults(p)));
        }
        let file = PathBuf::from(&config.strategies_file);
        let content = std::fs::read(&file).map_err(|e| load_error(read_problem(&file, &e)))?;
        let parsed = parse(&content, p).map_err(|e| load_error(parse_problem(&file, &e)))?;
        log_warnings(&file, &parsed.warnings);
        tracing::info!(
            file = %file.display(),
            services = parsed.store.services.len(),
            "loaded sampling strategies"
        );
        Ok(Self::new(Some(file), config, content, parsed.store))
    }

    fn new(
        file: Option<PathBuf>,
        config: &skein_config::Sampling,
        loaded: Vec<u8>,
        store: Store,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                file,
                reload_interval: config.reload_interval(),
                default_probability: config.default_probability,
                loaded,
                current: RwLock::new(Arc::new(store)),
            }),
        }
    }

    /// The strategy of `service`: its own, or the default one.
    pub fn strategy_for(&self, service: &str) -> SamplingStrategyResponse {
        let store = self.store();
        store.get(service).clone()
    }

    fn store(&self) -> Arc<Store> {
        let current = self
            .inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&current)
    }

    fn swap(&self, store: Store) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(store);
    }

    /// Reloads the file whenever its content changes, until `shutdown`.
    /// Returns at once without a file (or with a zero interval, which Jaeger
    /// also takes as "never reload").
    pub async fn watch(self, shutdown: CancellationToken) {
        let (Some(file), period) = (self.inner.file.clone(), self.inner.reload_interval) else {
            return;
        };
        if period.is_zero() {
            return;
        }
        // The first check one period after startup, which read the file.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ticks = IntervalStream::new(ticker).map(|_| ());
        self.watch_with(shutdown, ticks, move || tokio::fs::read(file.clone()))
            .await;
    }

    /// The watch loop: at every tick, `read` the file and reload it.
    async fn watch_with<T, F, R>(self, shutdown: CancellationToken, ticks: T, mut read: F)
    where
        T: Stream<Item = ()>,
        F: FnMut() -> R,
        R: Future<Output = std::io::Result<Vec<u8>>>,
    {
        let file = self.inner.file.clone().unwrap_or_default();
        let mut ticks = std::pin::pin!(ticks);
        let mut state = Reloader {
            applied: self.inner.loaded.clone(),
            problem: None,
        };
        loop {
            let content = tokio::select! {
                () = shutdown.cancelled() => return,
                tick = ticks.next() => match tick {
                    Some(()) => tokio::select! {
                        () = shutdown.cancelled() => return,
                        content = read() => content,
                    },
                    None => return,
                },
            };
            match self.reload(&mut state, content) {
                Reload::Unchanged => {}
                Reload::Updated(warnings) => {
                    log_warnings(&file, &warnings);
                    tracing::info!(
                        file = %file.display(),
                        services = self.store().services.len(),
                        "reloaded sampling strategies"
                    );
                }
                Reload::Kept { problem, repeated } => {
                    if !repeated {
                        tracing::warn!(
                            file = %file.display(),
                            %problem,
                            "keeping the last good sampling strategies"
                        );
                    }
                }
                Reload::Restored => tracing::info!(
                    file = %file.display(),
                    "strategies file holds the strategies in force again"
                ),
            }
        }
    }

    /// One reload check, given what reading the file gave.
    fn reload(&self, state: &mut Reloader, content: std::io::Result<Vec<u8>>) -> Reload {
        let file = self.inner.file.as_deref().unwrap_or(Path::new(""));
        let parsed = match content {
            Err(e) => Err(read_problem(file, &e)),
            Ok(content) if content == state.applied => {
                return match state.problem.take() {
                    Some(_) => Reload::Restored,
                    None => Reload::Unchanged,
                };
            }
            Ok(content) => parse(&content, self.inner.default_probability)
                .map(|parsed| (parsed, content))
                .map_err(|e| parse_problem(file, &e)),
        };
        match parsed {
            Ok((parsed, content)) => {
                self.swap(parsed.store);
                state.applied = content;
                state.problem = None;
                Reload::Updated(parsed.warnings)
            }
            Err(problem) => {
                let repeated = state.problem.as_ref() == Some(&problem);
                state.problem = Some(problem.clone());
                Reload::Kept { problem, repeated }
            }
        }
    }
}

fn load_error(message: String) -> crate::Error {
    crate::Error::Strategies(message)
}

/// What the watcher remembers between checks.
struct Reloader {
    /// The content of the strategies in force.
    applied: Vec<u8>,
    /// The problem last reported, so it is reported once.
    problem: Option<String>,
}

/// The outcome of one check.
#[derive(Debug, PartialEq)]
enum Reload {
    /// The file holds the strategies in force.
    Unchanged,
    /// New strategies are in force; what was tolerated in them.
    Updated(Vec<String>),
    /// The file cannot be read or parsed; the last good strategies stay.
    /// `repeated` when the same problem was reported at the last check.
    Kept { problem: String, repeated: bool },
    /// After a problem, the file holds the strategies in force again.
    Restored,
}

// ---------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------

/// `GET /sampling?service=` (agent style) and `GET /api/sampling?service=`.
pub(crate) fn router(strategies: Strategies) -> Router {
    Router::new()
        .route("/sampling", get(sampling))
        .route("/api/sampling", get(sampling))
        .with_state(strategies)
}

/// Answers as Jaeger's handler: 200 with the strategy as JSON, or 400 unless
/// `service` is given exactly once (an empty name is a name).
async fn sampling(
    State(strategies): State<Strategies>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let service = query.ok().and_then(|Query(pairs)| only_service(pairs));
    let Some(service) = service else {
        metrics::counter!(SAMPLING_REQUESTS, "outcome" => "invalid").increment(1);
        return (StatusCode::BAD_REQUEST, BAD_SERVICE).into_response();
    };
    metrics::counter!(SAMPLING_REQUESTS, "outcome" => "ok").increment(1);
    Json(strategies.strategy_for(&service)).into_response()
}

fn only_service(pairs: Vec<(String, String)>) -> Option<String> {
    let mut services = pairs
        .into_iter()
        .filter(|(key, _)| key == "service")
        .map(|(_, value)| value);
    match (services.next(), services.next()) {
        (Some(service), None) => Some(service),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: f64 = 0.001;

    fn config() -> skein_config::Sampling {
        skein_config::Sampling::default()
    }

    fn store(json: &str) -> Store {
        parse(json.as_bytes(), P).expect("valid").store
    }

    fn warnings(json: &str) -> Vec<String> {
        parse(json.as_bytes(), P).expect("valid").warnings
    }

    fn json(response: &SamplingStrategyResponse) -> String {
        serde_json::to_string(response).expect("serialisable")
    }

    fn op(operation: &str, sampling_rate: f64) -> OperationSamplingStrategy {
        OperationSamplingStrategy {
            operation: operation.to_owned(),
            probabilistic_sampling: ProbabilisticSamplingStrategy { sampling_rate },
        }
    }

    fn ops(default: f64, list: &[(&str, f64)]) -> Option<PerOperationSamplingStrategies> {
        Some(PerOperationSamplingStrategies {
            default_sampling_probability: default,
            per_operation_strategies: list.iter().map(|(o, p)| op(o, *p)).collect(),
            ..PerOperationSamplingStrategies::default()
        })
    }

    fn with_ops(
        mut r: SamplingStrategyResponse,
        operations: Option<PerOperationSamplingStrategies>,
    ) -> SamplingStrategyResponse {
        r.operation_sampling = operations;
        r
    }

    fn strategies(json: &str, reload_interval_ms: u64) -> Strategies {
        let config = skein_config::Sampling {
            strategies_file: "strategies.json".to_owned(),
            reload_interval_ms,
            ..config()
        };
        let store = parse(json.as_bytes(), P).expect("valid").store;
        Strategies::new(
            Some(PathBuf::from("strategies.json")),
            &config,
            json.as_bytes().to_vec(),
            store,
        )
    }

    fn rate(s: &Strategies, service: &str) -> f64 {
        s.strategy_for(service)
            .probabilistic_sampling
            .expect("probabilistic")
            .sampling_rate
    }

    // Jaeger's fixtures/operation_strategies.json.
    const OPERATIONS: &str = r#"{
      "default_strategy": {"type": "probabilistic", "param": 0.5, "operation_strategies": [
        {"operation": "op0", "type": "probabilistic", "param": 0.2},
        {"operation": "op6", "type": "probabilistic", "param": 0},
        {"operation": "spam", "type": "ratelimiting", "param": 1},
        {"operation": "op7", "type": "probabilistic", "param": 1}]},
      "service_strategies": [
        {"service": "foo", "type": "probabilistic", "param": 0.8, "operation_strategies": [
          {"operation": "op6", "type": "probabilistic", "param": 0.5},
          {"operation": "op1", "type": "probabilistic", "param": 0.2},
          {"operation": "op2", "type": "ratelimiting", "param": 10}]},
        {"service": "bar", "type": "ratelimiting", "param": 5, "operation_strategies": [
          {"operation": "op3", "type": "probabilistic", "param": 0.3},
          {"operation": "op4", "type": "ratelimiting", "param": 100},
          {"operation": "op5", "type": "probabilistic", "param": 0.4}]}]}"#;

    #[test]
    fn without_a_file_every_service_gets_the_default_probability() {
        let s = Strategies::load(&config()).expect("no file to read");
        assert_eq!(
            s.strategy_for("anything"),
            SamplingStrategyResponse::probabilistic(0.001)
        );
        let s = Strategies::load(&skein_config::Sampling {
            default_probability: 0.25,
            ..config()
        })
        .expect("no file to read");
        assert_eq!(
            s.strategy_for(""),
            SamplingStrategyResponse::probabilistic(0.25)
        );
    }

    #[test]
    fn a_service_gets_its_own_strategy_and_others_the_default_one() {
        let store = store(
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.5},
                "service_strategies": [
                  {"service": "foo", "type": "probabilistic", "param": 0.8},
                  {"service": "bar", "type": "ratelimiting", "param": 5}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &SamplingStrategyResponse::probabilistic(0.8)
        );
        assert_eq!(
            store.get("bar"),
            &SamplingStrategyResponse::rate_limiting(5)
        );
        assert_eq!(
            store.get("baz"),
            &SamplingStrategyResponse::probabilistic(0.5)
        );
        // Names are matched exactly.
        assert_eq!(
            store.get("Foo"),
            &SamplingStrategyResponse::probabilistic(0.5)
        );
    }

    #[test]
    fn without_a_default_strategy_others_get_the_default_probability() {
        let store = store(
            r#"{"service_strategies": [{"service": "foo", "type": "ratelimiting", "param": 2}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &SamplingStrategyResponse::rate_limiting(2)
        );
        assert_eq!(
            store.get("other"),
            &SamplingStrategyResponse::probabilistic(P)
        );
    }

    #[test]
    fn rate_limits_are_truncated_to_integers() {
        let store = store(
            r#"{"service_strategies": [
                {"service": "a", "type": "ratelimiting", "param": 3.5},
                {"service": "b", "type": "ratelimiting", "param": -2.7},
                {"service": "c", "type": "ratelimiting", "param": 1e12}]}"#,
        );
        assert_eq!(store.get("a"), &SamplingStrategyResponse::rate_limiting(3));
        assert_eq!(store.get("b"), &SamplingStrategyResponse::rate_limiting(-2));
        assert_eq!(
            store.get("c"),
            &SamplingStrategyResponse::rate_limiting(i32::MAX)
        );
    }

    #[test]
    fn an_unknown_or_missing_type_is_the_default_probability_with_a_warning() {
        let file = r#"{"default_strategy": {"type": "Probabilistic", "param": 0.5},
            "service_strategies": [{"service": "foo", "param": 0.8}]}"#;
        let store = store(file);
        assert_eq!(store.default, SamplingStrategyResponse::probabilistic(P));
        assert_eq!(
            store.get("foo"),
            &SamplingStrategyResponse::probabilistic(P)
        );
        assert_eq!(
            warnings(file),
            [
                "default_strategy: unknown strategy type \"Probabilistic\" (expected \
                 \"probabilistic\" or \"ratelimiting\"); using probabilistic sampling with \
                 the default probability 0.001",
                "service \"foo\": unknown strategy type \"\" (expected \"probabilistic\" or \
                 \"ratelimiting\"); using probabilistic sampling with the default \
                 probability 0.001",
            ]
        );
    }

    #[test]
    fn operation_strategies_are_merged_as_jaeger_does() {
        let store = store(OPERATIONS);
        // Own operations first, rate-limited ones dropped, then the default
        // strategy's operations not listed; default probability: the
        // service's own.
        assert_eq!(
            store.get("foo"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(0.8),
                ops(
                    0.8,
                    &[("op6", 0.5), ("op1", 0.2), ("op0", 0.2), ("op7", 1.0)]
                )
            )
        );
        // A rate-limited service keeps its rate limit; its operations'
        // default probability is the configured default, not the default
        // strategy's.
        assert_eq!(
            store.get("bar"),
            &with_ops(
                SamplingStrategyResponse::rate_limiting(5),
                ops(
                    P,
                    &[
                        ("op3", 0.3),
                        ("op5", 0.4),
                        ("op0", 0.2),
                        ("op6", 0.0),
                        ("op7", 1.0)
                    ]
                )
            )
        );
        assert_eq!(
            store.get("unknown"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(0.5),
                ops(0.5, &[("op0", 0.2), ("op6", 0.0), ("op7", 1.0)])
            )
        );
        assert_eq!(
            warnings(OPERATIONS),
            [
                "default_strategy, operation \"spam\": operation strategies support only \
                 probabilistic sampling; ignored, the operation gets the default probability 0.5",
                "service \"foo\", operation \"op2\": operation strategies support only \
                 probabilistic sampling; ignored, the operation gets the default probability 0.8",
                "service \"bar\", operation \"op4\": operation strategies support only \
                 probabilistic sampling; ignored, the operation gets the default probability 0.001",
            ]
        );
    }

    #[test]
    fn a_service_without_operations_gets_the_default_ones() {
        // Jaeger's fixtures/service_no_per_operation.json.
        let store = store(
            r#"{"service_strategies": [
                  {"service": "ServiceA", "type": "probabilistic", "param": 1.0},
                  {"service": "ServiceB", "type": "ratelimiting", "param": 3}],
                "default_strategy": {"type": "probabilistic", "param": 0.2,
                  "operation_strategies": [
                    {"operation": "/health", "type": "probabilistic", "param": 0.1}]}}"#,
        );
        // A probabilistic service's own rate becomes the operations' default.
        assert_eq!(
            store.get("ServiceA"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(1.0),
                ops(1.0, &[("/health", 0.1)])
            )
        );
        // A rate-limited one keeps the default strategy's.
        assert_eq!(
            store.get("ServiceB"),
            &with_ops(
                SamplingStrategyResponse::rate_limiting(3),
                ops(0.2, &[("/health", 0.1)])
            )
        );
    }

    #[test]
    fn without_default_operations_a_service_keeps_its_own() {
        let store = store(
            r#"{"default_strategy": {"type": "ratelimiting", "param": 7},
                "service_strategies": [
                  {"service": "foo", "type": "probabilistic", "param": 0.3, "operation_strategies": [
                    {"operation": "op1", "type": "probabilistic", "param": 0.9}]},
                  {"service": "bar", "type": "probabilistic", "param": 0.4}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(0.3),
                ops(0.3, &[("op1", 0.9)])
            )
        );
        assert_eq!(
            store.get("bar"),
            &SamplingStrategyResponse::probabilistic(0.4)
        );
        assert_eq!(
            store.get("baz"),
            &SamplingStrategyResponse::rate_limiting(7)
        );
    }

    #[test]
    fn a_rate_limited_default_with_operations_uses_the_configured_probability() {
        let store = store(
            r#"{"default_strategy": {"type": "ratelimiting", "param": 7, "operation_strategies": [
                  {"operation": "op1", "type": "probabilistic", "param": 0.9}]},
                "service_strategies": [
                  {"service": "foo", "type": "probabilistic", "param": 0.3},
                  {"service": "bar", "type": "ratelimiting", "param": 1}]}"#,
        );
        assert_eq!(
            store.default,
            with_ops(
                SamplingStrategyResponse::rate_limiting(7),
                ops(P, &[("op1", 0.9)])
            )
        );
        assert_eq!(
            store.get("foo"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(0.3),
                ops(0.3, &[("op1", 0.9)])
            )
        );
        assert_eq!(
            store.get("bar"),
            &with_ops(
                SamplingStrategyResponse::rate_limiting(1),
                ops(P, &[("op1", 0.9)])
            )
        );
    }

    #[test]
    fn an_unknown_operation_type_is_the_default_probability() {
        let store = store(
            r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.3,
                "operation_strategies": [{"operation": "op1", "type": "always", "param": 1}]}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &with_ops(
                SamplingStrategyResponse::probabilistic(0.3),
                ops(0.3, &[("op1", P)])
            )
        );
    }

    #[test]
    fn only_rate_limited_operations_leave_an_empty_list() {
        let store = store(
            r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.3,
                "operation_strategies": [{"operation": "op1", "type": "ratelimiting", "param": 1}]}]}"#,
        );
        let foo = store.get("foo");
        assert_eq!(
            foo,
            &with_ops(SamplingStrategyResponse::probabilistic(0.3), ops(0.3, &[]))
        );
        assert_eq!(
            json(foo),
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.3},"operationSampling":{"defaultSamplingProbability":0.3,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[],"defaultUpperBoundTracesPerSecond":0}}"#
        );
    }

    #[test]
    fn an_empty_operation_list_is_no_operations() {
        let store = store(
            r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.3,
                "operation_strategies": []}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &SamplingStrategyResponse::probabilistic(0.3)
        );
    }

    #[test]
    fn own_operations_take_precedence_and_duplicates_are_kept_as_jaeger_does() {
        let mut own = vec![op("a", 0.1), op("b", 0.2), op("a", 0.3)];
        merge(&mut own, &[op("b", 0.9), op("c", 0.4), op("c", 0.5)]);
        assert_eq!(
            own,
            [
                op("a", 0.1),
                op("b", 0.2),
                op("a", 0.3),
                op("c", 0.4),
                op("c", 0.5)
            ]
        );
    }

    #[test]
    fn the_last_entry_of_a_service_wins_with_a_warning() {
        let file = r#"{"service_strategies": [
            {"service": "foo", "type": "probabilistic", "param": 0.1},
            {"service": "foo", "type": "probabilistic", "param": 0.2}]}"#;
        assert_eq!(
            store(file).get("foo"),
            &SamplingStrategyResponse::probabilistic(0.2)
        );
        assert_eq!(
            warnings(file),
            ["service \"foo\" is listed more than once; the last entry wins"]
        );
    }

    #[test]
    fn null_empty_and_unknown_fields_read_as_go_does() {
        for file in [
            "null",
            "{}",
            r#"{"service_strategies": null, "default_strategy": null}"#,
        ] {
            assert_eq!(store(file), Store::defaults(P), "{file}");
        }
        let store = store(
            r#"{"comment": "ignored", "service_strategies": [
                {"service": "foo", "type": "probabilistic", "param": null, "extra": [1],
                 "operation_strategies": null},
                {"service": null, "type": "ratelimiting", "param": 4}]}"#,
        );
        assert_eq!(
            store.get("foo"),
            &SamplingStrategyResponse::probabilistic(0.0)
        );
        assert_eq!(store.get(""), &SamplingStrategyResponse::rate_limiting(4));
        assert!(warnings("{}").is_empty());
    }

    #[test]
    fn invalid_files_are_reported_with_the_file_and_the_problem() {
        let file = Path::new("/etc/skein/strategies.json");
        let problem = |content: &str| {
            let e = parse(content.as_bytes(), P).expect_err("invalid");
            parse_problem(file, &e)
        };
        assert_eq!(
            problem(""),
            "invalid strategies file /etc/skein/strategies.json: \
             EOF while parsing a value at line 1 column 0"
        );
        assert_eq!(
            problem("bad value"),
            "invalid strategies file /etc/skein/strategies.json: \
             expected value at line 1 column 1"
        );
        assert_eq!(
            problem("\"a string\""),
            "invalid strategies file /etc/skein/strategies.json: \
             invalid type: string \"a string\", expected a strategies object at line 1 column 10"
        );
        assert_eq!(
            problem(r#"{"service_strategies": [{"service": "foo", "param": "0.5"}]}"#),
            "invalid strategies file /etc/skein/strategies.json: \
             invalid type: string \"0.5\", expected f64 at line 1 column 57"
        );
        assert_eq!(
            problem(r#"{"service_strategies": {"service": "foo"}}"#),
            "invalid strategies file /etc/skein/strategies.json: \
             invalid type: map, expected a sequence at line 1 column 23"
        );
        assert_eq!(
            problem(r#"{"service_strategies": [{"service": "foo"}]} trailing"#),
            "invalid strategies file /etc/skein/strategies.json: \
             trailing characters at line 1 column 46"
        );
        assert_eq!(
            problem(r#"{"service_strategies": [{"service": "foo"}, null]}"#),
            "invalid strategies file /etc/skein/strategies.json: service_strategies[1] is null"
        );
        assert_eq!(
            problem(r#"{"service_strategies": [{"operation_strategies": [null]}]}"#),
            "invalid strategies file /etc/skein/strategies.json: \
             service_strategies[0].operation_strategies[0] is null"
        );
        assert_eq!(
            problem(r#"{"default_strategy": {"operation_strategies": [{}, null]}}"#),
            "invalid strategies file /etc/skein/strategies.json: \
             default_strategy.operation_strategies[1] is null"
        );
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            read_problem(file, &missing),
            "cannot read strategies file /etc/skein/strategies.json: entity not found"
        );
    }

    #[test]
    fn responses_serialise_as_jaeger_http_handler_writes_them() {
        assert_eq!(
            json(&SamplingStrategyResponse::probabilistic(0.001)),
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.001}}"#
        );
        assert_eq!(
            json(&SamplingStrategyResponse::probabilistic(1.0)),
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1}}"#
        );
        assert_eq!(
            json(&SamplingStrategyResponse::rate_limiting(42)),
            r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":42}}"#
        );
        let per_operation = store(OPERATIONS).get("bar").clone();
        assert_eq!(
            json(&per_operation),
            concat!(
                r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":5},"#,
                r#""operationSampling":{"defaultSamplingProbability":0.001,"#,
                r#""defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":["#,
                r#"{"operation":"op3","probabilisticSampling":{"samplingRate":0.3}},"#,
                r#"{"operation":"op5","probabilisticSampling":{"samplingRate":0.4}},"#,
                r#"{"operation":"op0","probabilisticSampling":{"samplingRate":0.2}},"#,
                r#"{"operation":"op6","probabilisticSampling":{"samplingRate":0}},"#,
                r#"{"operation":"op7","probabilisticSampling":{"samplingRate":1}}],"#,
                r#""defaultUpperBoundTracesPerSecond":0}}"#
            )
        );
        // What Jaeger writes parses back.
        let back: SamplingStrategyResponse =
            serde_json::from_str(&json(&per_operation)).expect("parses");
        assert_eq!(back, per_operation);
        assert_eq!(SamplingStrategyType::RateLimiting as i32, 1);
    }

    #[test]
    fn a_reload_swaps_new_strategies_and_keeps_the_last_good_ones() {
        let first = r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.8}]}"#;
        let second = r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.9}]}"#;
        let s = strategies(first, 1000);
        let mut state = Reloader {
            applied: first.as_bytes().to_vec(),
            problem: None,
        };
        let mut reload = |content: std::io::Result<&str>| {
            s.reload(&mut state, content.map(|c| c.as_bytes().to_vec()))
        };
        assert_eq!(reload(Ok(first)), Reload::Unchanged);
        assert_eq!(rate(&s, "foo"), 0.8);

        assert_eq!(reload(Ok(second)), Reload::Updated(Vec::new()));
        assert_eq!(rate(&s, "foo"), 0.9);

        let broken = Reload::Kept {
            problem: "invalid strategies file strategies.json: \
                      EOF while parsing a list at line 1 column 24"
                .to_owned(),
            repeated: false,
        };
        assert_eq!(reload(Ok(r#"{"service_strategies": ["#)), broken);
        assert_eq!(rate(&s, "foo"), 0.9);
        assert!(matches!(
            reload(Ok(r#"{"service_strategies": ["#)),
            Reload::Kept { repeated: true, .. }
        ));
        assert_eq!(reload(Ok(second)), Reload::Restored);
        assert_eq!(reload(Ok(second)), Reload::Unchanged);

        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            reload(Err(gone)),
            Reload::Kept {
                problem: "cannot read strategies file strategies.json: entity not found".to_owned(),
                repeated: false
            }
        );
        assert_eq!(rate(&s, "foo"), 0.9);

        assert_eq!(
            reload(Ok(
                r#"{"service_strategies": [{"service": "foo", "type": "x"}]}"#
            )),
            Reload::Updated(vec![
                "service \"foo\": unknown strategy type \"x\" (expected \"probabilistic\" or \
                 \"ratelimiting\"); using probabilistic sampling with the default probability 0.001"
                    .to_owned()
            ])
        );
        assert_eq!(rate(&s, "foo"), 0.001);
    }

    /// Lets the other tasks of this single-threaded runtime run until
    /// `done` holds.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn the_watcher_reloads_at_every_tick_and_stops_on_shutdown() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let first = r#"{"service_strategies": [{"service": "foo", "type": "probabilistic", "param": 0.8}]}"#;
        let s = strategies(first, 1000);
        let content = Arc::new(std::sync::Mutex::new(first.to_owned()));
        let reads = Arc::new(AtomicUsize::new(0));
        let (tick, ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
        let ticks =
            futures::stream::unfold(
                ticks,
                |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
            );
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(s.clone().watch_with(shutdown.clone(), ticks, {
            let (content, reads) = (content.clone(), reads.clone());
            move || {
                reads.fetch_add(1, Ordering::SeqCst);
                let c = content.lock().expect("not poisoned").clone().into_bytes();
                async move { Ok(c) }
            }
        }));
        let read_count = || reads.load(Ordering::SeqCst);

        tokio::task::yield_now().await;
        assert_eq!(read_count(), 0, "no check before the first tick");
        *content.lock().expect("not poisoned") = first.replace("0.8", "0.6");
        tick.send(()).expect("watching");
        until(|| rate(&s, "foo") == 0.6).await;
        assert_eq!(read_count(), 1);

        *content.lock().expect("not poisoned") = "broken".to_owned();
        tick.send(()).expect("watching");
        until(|| read_count() == 2).await;
        tokio::task::yield_now().await;
        assert_eq!(rate(&s, "foo"), 0.6, "the last good strategies stay");

        shutdown.cancel();
        watcher.await.expect("watcher ends");
        assert!(tick.send(()).is_err(), "the watcher is gone");
        assert_eq!(read_count(), 2);
    }

    #[tokio::test]
    async fn watch_returns_at_once_without_a_file() {
        let s = Strategies::load(&config()).expect("no file to read");
        // Not cancelled: it must return by itself.
        s.watch(CancellationToken::new()).await;
    }

    async fn answer(s: &Strategies, query: &[(&str, &str)]) -> (StatusCode, String, String) {
        let pairs = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let response = sampling(State(s.clone()), Ok(Query(pairs))).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    #[tokio::test]
    async fn the_handler_answers_as_jaeger_does() {
        let s = strategies(
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.5},
                "service_strategies": [{"service": "bar", "type": "ratelimiting", "param": 5}]}"#,
            1000,
        );
        assert_eq!(
            answer(&s, &[("service", "bar")]).await,
            (
                StatusCode::OK,
                "application/json".to_owned(),
                r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":5}}"#
                    .to_owned()
            )
        );
        let default =
            r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.5}}"#;
        assert_eq!(answer(&s, &[("service", "")]).await.2, default);
        assert_eq!(
            answer(&s, &[("other", "x"), ("service", "baz")]).await.2,
            default
        );
        let bad = (
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8".to_owned(),
            "'service' parameter must be provided once\n".to_owned(),
        );
        assert_eq!(answer(&s, &[]).await, bad);
        assert_eq!(answer(&s, &[("services", "bar")]).await, bad);
        assert_eq!(
            answer(&s, &[("service", "bar"), ("service", "baz")]).await,
            bad
        );
    }
}
