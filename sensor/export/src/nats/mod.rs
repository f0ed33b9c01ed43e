//! NATS JetStream sink: each record's EVE JSON object (the bytes [`super::eve`] writes, without
//! the newline) published on `sensor.<sensor_id>.<event_type>`, with a `Nats-Msg-Id` header so
//! JetStream drops a message it already stored (a batch re-sent after a lost acknowledgement).
//!
//! A batch is acknowledged when every one of its messages is; at most `max_inflight`
//! acknowledgements are awaited at once. The stream is created if missing, or its subjects and
//! limits updated to the configured ones.
//!
//! Failing over to the spool: while the server is gone, async-nats keeps reconnecting by
//! itself and queues publishes in its command channel without an error, and an acknowledgement
//! future's own timeout only starts when it is first polled, so awaiting a batch's acks one
//! after the other could hold a batch for `timeout` times its message count. So a batch fails
//! with [`SendError::Transient`] as soon as the client reports it is not connected (checked
//! before the batch and every [`CHECK_EVERY`] while it waits), or when any message is not
//! acknowledged within `timeout` of being published; the driver then spools it and replays it
//! with the same message ids. After a failure the client is dropped and the next attempt
//! connects afresh: credentials refused after a server restart are a config error, as at
//! start-up, and while nothing listens the attempt fails at once (a host that does not answer
//! at all holds it up to `timeout`). A dropped client goes on reconnecting in the background
//! until the server is back, then sends what it had queued and closes: JetStream drops those
//! messages as duplicates of the replayed batch, stored within seconds of them, well inside
//! `duplicate_window`.

pub mod encoder;

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::sink::{Fatal, SendError, Sink};

/// Connection and stream settings, already resolved (secrets from the environment, etc.).
#[derive(Clone)]
pub struct NatsOptions {
    pub url: String,
    pub token: String,
    pub user: String,
    pub password: String,
    pub ca_file: String,
    pub stream: String,
    pub sensor_id: String,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub duplicate_window: Duration,
    pub max_inflight: usize,
    pub timeout: Duration,
}

impl std::fmt::Debug for NatsOptions {
    /// Token and password are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("stream", &self.stream)
            .field("sensor_id", &self.sensor_id)
            .finish_non_exhaustive()
    }
}

impl NatsOptions {
    /// From the `[nats]` section; an empty token or password is taken from
    /// `SENSOR_NATS_TOKEN` / `SENSOR_NATS_PASSWORD`.
    pub fn from_config(n: &crate::config::NatsSection, sensor_id: &str) -> NatsOptions {
        NatsOptions {
            url: n.url.clone(),
            token: n.token.or_env("SENSOR_NATS_TOKEN"),
            user: n.user.clone(),
            password: n.password.or_env("SENSOR_NATS_PASSWORD"),
            ca_file: n.ca_file.clone(),
            stream: n.stream.clone(),
            sensor_id: sensor_id.to_string(),
            max_bytes: n.max_bytes,
            max_age: Duration::from_secs(n.max_age),
            duplicate_window: Duration::from_secs(n.duplicate_window),
            max_inflight: n.max_inflight,
            timeout: Duration::from_secs(n.timeout),
        }
    }

    /// Client options: timeouts, credentials, TLS (the sink's and the command channel's).
    pub fn connect_options(&self, name: &str) -> async_nats::ConnectOptions {
        let mut c = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .name(name);
        if !self.token.is_empty() {
            c = c.token(self.token.clone());
        } else if !self.user.is_empty() {
            c = c.user_and_password(self.user.clone(), self.password.clone());
        }
        if !self.ca_file.is_empty() {
            c = c
                .add_root_certificates(PathBuf::from(&self.ca_file))
                .require_tls(true);
        }
        c
    }
}

/// Appends one message to a batch payload: `[u16 subject len][subject][u16 id len][id]
/// [u32 payload len][payload]`.
pub fn push_message(out: &mut Vec<u8>, subject: &str, id: &str, payload: &[u8]) {
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One message of a batch payload, borrowed.
pub struct Message<'a> {
    pub subject: &'a str,
    pub id: &'a str,
    pub payload: &'a [u8],
}

/// The message ids of the first and last message of a batch payload (what the spool reports
/// when it drops the batch).
pub fn describe(payload: &[u8]) -> Option<(String, String)> {
    let m = messages(payload)?;
    Some((m.first()?.id.to_string(), m.last()?.id.to_string()))
}

/// Splits a batch payload back into messages; `None` if it is damaged.
pub fn messages(mut p: &[u8]) -> Option<Vec<Message<'_>>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = (p.get(..n)?, p.get(n..)?);
        *p = b;
        Some(a)
    }
    let mut out = Vec::new();
    while !p.is_empty() {
        let sl = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?);
        let subject = std::str::from_utf8(take(&mut p, usize::from(sl))?).ok()?;
        let il = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?);
        let id = std::str::from_utf8(take(&mut p, usize::from(il))?).ok()?;
        let pl = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?);
        let payload = take(&mut p, pl as usize)?;
        out.push(Message {
            subject,
            id,
            payload,
        });
    }
    Some(out)
}

/// How often a batch waiting on the server checks that the client is still connected.
const CHECK_EVERY: Duration = Duration::from_millis(50);

pub struct NatsSink {
    opts: NatsOptions,
    /// The stream's subjects and replica count (see [`NatsSink::for_stream`]).
    subjects: Vec<String>,
    replicas: usize,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    /// The sensor's sink: stream `opts.stream` on `sensor.<sensor_id>.>`, one replica.
    pub fn new(opts: NatsOptions) -> NatsSink {
        let subject = format!("sensor.{}.>", opts.sensor_id);
        NatsSink::for_stream(opts, vec![subject], 1)
    }

    /// A sink for another stream, with its own subjects and replica count (the pipeline's
    /// `ALERTS` on `alerts.>`); batches carry each message's subject, so only the stream's
    /// creation differs. `sensor_id` of `opts` is then unused.
    pub fn for_stream(opts: NatsOptions, subjects: Vec<String>, replicas: usize) -> NatsSink {
        NatsSink {
            opts,
            subjects,
            replicas: replicas.max(1),
            js: None,
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, SendError> {
        let o = &self.opts;
        let client = o
            .connect_options("sensor")
            .connect(o.url.as_str())
            .await
            .map_err(|e| {
                let msg = e.to_string();
                if matches!(
                    e.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                ) {
                    SendError::Fatal(Fatal::credentials(msg))
                } else if let Some(why) = super::tls::tls_failure(&e) {
                    // A certificate our CA did not sign comes as an I/O error.
                    SendError::Fatal(Fatal::tls(why))
                } else if matches!(e.kind(), async_nats::ConnectErrorKind::Tls) {
                    SendError::Fatal(Fatal::tls(msg))
                } else {
                    SendError::Transient(format!("cannot connect: {msg}"))
                }
            })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(o.timeout)
            .ack_timeout(o.timeout)
            .max_ack_inflight(o.max_inflight)
            .backpressure_on_inflight(true)
            .build(client);
        let cfg = stream::Config {
            name: o.stream.clone(),
            subjects: self.subjects.clone(),
            num_replicas: self.replicas,
            max_bytes: if o.max_bytes > 0 { o.max_bytes } else { -1 },
            max_age: o.max_age,
            duplicate_window: o.duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        match js.get_stream(&o.stream).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| SendError::Transient(format!("stream info: {e}")))?;
                let mut want = info.config.clone();
                for subject in &self.subjects {
                    if !want.subjects.contains(subject) {
                        want.subjects.push(subject.clone());
                    }
                }
                want.max_bytes = cfg.max_bytes;
                want.max_age = cfg.max_age;
                want.duplicate_window = cfg.duplicate_window;
                if want != info.config {
                    js.update_stream(want).await.map_err(|e| {
                        SendError::Fatal(Fatal::other(format!("cannot update stream: {e}")))
                    })?;
                }
            }
            Err(_) => {
                js.create_stream(cfg).await.map_err(|e| {
                    SendError::Transient(format!("cannot create stream {}: {e}", o.stream))
                })?;
            }
        }
        Ok(js)
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        if self.js.is_none() {
            self.js = Some(self.connect().await?);
        }
        Ok(())
    }

    async fn send(&mut self, _rows: u32, payload: &[u8]) -> Result<(), SendError> {
        let Some(js) = self.js.clone() else {
            return Err(SendError::Transient("not connected".into()));
        };
        let Some(msgs) = messages(payload) else {
            return Err(SendError::Permanent("damaged batch".into()));
        };
        let client = js.client();
        let connected = || client.connection_state() == State::Connected;
        if !connected() {
            // Do not queue a batch in a client that is reconnecting: spool it now.
            self.js = None;
            return Err(Stop::Disconnected.into());
        }
        let timeout = self.opts.timeout;
        let mut acks = Acks::new(self.opts.max_inflight.min(msgs.len()));
        let result = async {
            for m in msgs {
                if acks.len() >= self.opts.max_inflight {
                    acks.wait_oldest(&connected).await?;
                }
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", m.id);
                let due = Instant::now() + timeout;
                let publish = js.publish_with_headers(
                    m.subject.to_string(),
                    h,
                    Bytes::copy_from_slice(m.payload),
                );
                let ack = acks
                    .bounded(publish, due, &connected)
                    .await?
                    .map_err(|e| publish_error(&e))?;
                acks.push(due, ack.into_future());
            }
            acks.wait_all(&connected).await
        }
        .await;
        if let Err(SendError::Transient(_)) = &result {
            // Connect afresh and check the stream before the next attempt.
            self.js = None;
        }
        result
    }
}

/// Why a batch stopped waiting for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Disconnected,
    TimedOut,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Disconnected => "disconnected from the server",
            Stop::TimedOut => "no acknowledgement within nats.timeout",
        })
    }
}

impl From<Stop> for SendError {
    fn from(s: Stop) -> SendError {
        SendError::Transient(s.to_string())
    }
}

/// A batch's publishes awaiting their acknowledgement, oldest first, each with the time it must
/// be acknowledged by; generic over the acknowledgement future so the waiting is testable
/// without a server.
struct Acks<F> {
    pending: VecDeque<(Instant, F)>,
    /// Wakes a wait to check the connection and the deadline; one timer for the whole batch.
    tick: Interval,
}

impl<F, T, E> Acks<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
    E: AckError,
{
    fn new(capacity: usize) -> Acks<F> {
        let mut tick = tokio::time::interval_at(Instant::now() + CHECK_EVERY, CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Acks {
            pending: VecDeque::with_capacity(capacity),
            tick,
        }
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, due: Instant, ack: F) {
        self.pending.push_back((due, ack));
    }

    /// Runs `fut` until it completes, `due` passes, or `connected` turns false.
    async fn bounded<O>(
        &mut self,
        fut: impl Future<Output = O>,
        due: Instant,
        connected: &impl Fn() -> bool,
    ) -> Result<O, Stop> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                _ = self.tick.tick() => {
                    if !connected() {
                        return Err(Stop::Disconnected);
                    }
                    if Instant::now() >= due {
                        return Err(Stop::TimedOut);
                    }
                }
            }
        }
    }

    async fn wait_oldest(&mut self, connected: &impl Fn() -> bool) -> Result<(), SendError> {
        if let Some((due, mut ack)) = self.pending.pop_front() {
            self.bounded(&mut ack, due, connected)
                .await?
                .map_err(|e| e.send_error())?;
        }
        Ok(())
    }

    /// Waits for every acknowledgement; at the first failure the rest are given up (their
    /// batch will be sent again whole).
    async fn wait_all(&mut self, connected: &impl Fn() -> bool) -> Result<(), SendError> {
        while !self.pending.is_empty() {
            self.wait_oldest(connected).await?;
        }
        Ok(())
    }
}

/// How an acknowledgement's error counts.
trait AckError {
    fn send_error(&self) -> SendError;
}

impl AckError for jetstream::context::PublishError {
    fn send_error(&self) -> SendError {
        publish_error(self)
    }
}

fn publish_error(e: &jetstream::context::PublishError) -> SendError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => SendError::Permanent(e.to_string()),
        _ => SendError::Transient(e.to_string()),
    }
}

/// How long past its `expires` a pull batch is waited for (see [`PullBatch`]).
pub const BATCH_GRACE: Duration = Duration::from_millis(500);

/// A JetStream pull batch (`consumer.batch()...messages()`) read with a deadline: its
/// `expires` plus [`BATCH_GRACE`] from when it was requested.
///
/// async-nats ends a batch when the server's "408 Request Timeout" status arrives and
/// otherwise only 5 s after `expires`. nats-server 2.9 does not always send that status in
/// time: under a burst of commands the sensor's command channel stalled for those 5 s now and
/// then, with commands waiting in the stream (figures in `benches/README.md`). Past the
/// deadline the batch counts as ended and the caller asks for a new one; by then the server
/// has expired the request (it started its clock on receipt), so no message is sent to the
/// inbox given up.
pub struct PullBatch<S> {
    batch: S,
    deadline: Instant,
}

impl<S: futures_util::Stream + Unpin> PullBatch<S> {
    /// `batch`, requested just now with `expires`.
    pub fn new(batch: S, expires: Duration) -> PullBatch<S> {
        PullBatch {
            batch,
            deadline: Instant::now() + expires + BATCH_GRACE,
        }
    }

    /// The next message, `None` when the batch ended or its deadline passed.
    pub async fn next(&mut self) -> Option<S::Item> {
        use futures_util::StreamExt as _;
        tokio::time::timeout_at(self.deadline, self.batch.next())
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_payload_round_trips_and_damage_is_detected() {
        let mut p = Vec::new();
        push_message(&mut p, "sensor.a.flow", "a:1:f", b"{\"x\":1}");
        push_message(&mut p, "sensor.a.dns", "a:1:0", b"{}");
        let m = messages(&p).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].subject, "sensor.a.flow");
        assert_eq!(m[1].id, "a:1:0");
        assert_eq!(m[0].payload, b"{\"x\":1}");
        assert!(messages(&p[..p.len() - 1]).is_none());
    }

    #[derive(Debug)]
    struct Refused;

    impl AckError for Refused {
        fn send_error(&self) -> SendError {
            SendError::Permanent("refused".into())
        }
    }

    type Ack = std::pin::Pin<Box<dyn Future<Output = Result<(), Refused>> + Send>>;

    fn never() -> Ack {
        Box::pin(std::future::pending())
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn unanswered_acks_fail_the_batch_at_their_deadline_not_one_timeout_after_another() {
        run(async {
            let start = Instant::now();
            let mut acks = Acks::<Ack>::new(20);
            for _ in 0..20 {
                acks.push(start + Duration::from_millis(300), never());
            }
            let r = acks.wait_all(&|| true).await;
            let took = start.elapsed();
            assert_eq!(r, Err(Stop::TimedOut.into()));
            // Each ack timed on its own from when it is awaited would take 20 x 300 ms.
            assert!(took < Duration::from_secs(3), "{took:?}");
            assert!(took >= Duration::from_millis(300), "{took:?}");
        });
    }

    #[test]
    fn a_lost_connection_fails_a_waiting_batch_and_a_blocked_publish_at_once() {
        run(async {
            let start = Instant::now();
            let lost_at = start + Duration::from_millis(100);
            let connected = || Instant::now() < lost_at;
            let far = start + Duration::from_secs(60);
            let mut acks = Acks::<Ack>::new(4);
            acks.push(far, Box::pin(async { Ok(()) }));
            acks.push(far, never());
            assert_eq!(
                acks.wait_all(&connected).await,
                Err(Stop::Disconnected.into())
            );
            // A publish stuck on a full client queue gives up the same way.
            let r = acks
                .bounded(std::future::pending::<()>(), far, &connected)
                .await;
            assert_eq!(r, Err(Stop::Disconnected));
            assert!(start.elapsed() < Duration::from_secs(10));
        });
    }

    #[test]
    fn acknowledged_batches_pass_and_a_refused_message_fails_with_its_own_error() {
        run(async {
            let due = Instant::now() + Duration::from_secs(60);
            let mut acks = Acks::<Ack>::new(3);
            for _ in 0..3 {
                acks.push(due, Box::pin(async { Ok(()) }));
            }
            assert_eq!(acks.wait_all(&|| true).await, Ok(()));
            acks.push(due, Box::pin(async { Ok(()) }));
            acks.push(due, Box::pin(async { Err(Refused) }));
            acks.push(due, never());
            assert_eq!(
                acks.wait_all(&|| true).await,
                Err(SendError::Permanent("refused".into()))
            );
            // The rest of a failed batch is given up: the batch is sent again whole.
            assert_eq!(acks.len(), 1);
        });
    }

    #[test]
    fn a_pull_batch_ends_at_its_deadline_when_the_server_never_ends_it() {
        use futures_util::StreamExt as _;
        run(async {
            let items = futures_util::stream::iter([1, 2]).chain(futures_util::stream::pending());
            let mut b = PullBatch::new(items, Duration::ZERO);
            assert_eq!(b.next().await, Some(1));
            assert_eq!(b.next().await, Some(2));
            // Not a speed check: without the deadline this waits forever.
            let end = tokio::time::timeout(Duration::from_secs(60), b.next()).await;
            assert_eq!(end, Ok(None));
        })
    }
}
