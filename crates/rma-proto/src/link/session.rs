//! The link session as a pure state machine, the same at both ends (in the style of
//! openraft's engine and quinn-proto): frames, timeouts and drain requests go in, actions come
//! out — frames to send, pings, events for the application, and the close with its reason. The
//! coordinator's and the worker's session loops only move bytes between a WebSocket and this.
//!
//! Liveness has one rule at both ends: a link from which nothing (frame, ping or pong) has been
//! heard for `ping_interval × ping_misses` is given up. The coordinator pings every interval;
//! the worker's socket answers each ping with a pong, and the coordinator tells the worker both
//! numbers in its welcome. Before the welcome the limit is [`HANDSHAKE_TIMEOUT`].
//!
//! Handshake: the coordinator challenges (its id, a nonce); the worker checks the id is the
//! coordinator it registered with and answers hello with its signature of the challenge; the
//! coordinator checks the signature and welcomes or rejects. Signing and checking are the
//! application's (the session holds no keys).
//!
//! Drain: a worker that is stopping sends `goodbye`; the coordinator takes it out of rotation
//! and answers `goodbye` after every request it had already queued for it, so once the worker
//! has the acknowledgement nothing new is coming: it closes when its last answer has gone.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{LinkMessage, PROTOCOL_VERSION};
use crate::call::{ServiceCall, ServiceReply};

/// How long either end waits for the hello / welcome.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Silent ping intervals after which a link is given up, unless the coordinator says otherwise.
pub const DEFAULT_PING_MISSES: u32 = 5;

/// The shortest ping interval a worker accepts from a welcome.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(100);

/// The longest ping interval a worker accepts from a welcome or a tune: a coordinator's word
/// past it (or past what a clock can add) is taken as this.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(3600);

/// Which end of the link this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Coordinator,
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the hello (coordinator) or the welcome (worker).
    Handshake,
    /// Serving.
    Open,
    /// Goodbye said; `acknowledged` once the coordinator answered it (worker side).
    Draining { acknowledged: bool },
    /// Over; every further input is ignored.
    Closed,
}

/// What the session asks its loop to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message with this body as one frame.
    Send(LinkMessage, Bytes),
    /// Send a WebSocket ping.
    Ping,
    /// Hand this to the application.
    Deliver(Event),
    /// Close the link; the session is over.
    Close(End),
}

/// What the application hears from the link.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Coordinator: a worker of the right protocol version said hello; the application checks
    /// the signature and [`Session::accept`]s or [`Session::reject`]s it.
    Hello {
        /// The worker's id.
        worker_id: String,
        /// Its signature of the challenge.
        signature: String,
    },
    /// Worker: the coordinator challenges; the application signs and calls
    /// [`Session::prove`].
    Challenge {
        /// Who challenges.
        coordinator_id: String,
        /// What to sign.
        nonce: String,
    },
    /// Worker: the coordinator accepted the link.
    Welcome {
        /// Who accepted.
        coordinator_id: String,
    },
    /// Worker: run this call, queue its response on the link (`encode_response`) and tell
    /// [`Session::answer_sent`].
    Request {
        /// Correlates the answer.
        id: u64,
        /// The call, body included.
        call: ServiceCall,
    },
    /// Coordinator: the answer to a request.
    Response {
        /// The request's id.
        id: u64,
        /// The reply, body included.
        reply: ServiceReply,
    },
    /// Coordinator: progress of a request.
    Progress {
        /// The request's id.
        id: u64,
        /// Units done.
        done: u32,
        /// Units in all.
        total: u32,
    },
    /// Coordinator: the worker's heartbeat.
    Heartbeat {
        /// Load average per core.
        current_load: f64,
        /// Requests it is running.
        active_requests: u32,
        /// HTTP heartbeats that failed before this one.
        heartbeats_failed: u32,
    },
    /// Worker: the coordinator changed the ping interval; loops that tick at
    /// [`Session::ping_interval`] re-arm their timer.
    Tuned {
        /// The new interval.
        ping_interval: Duration,
    },
    /// Worker: the coordinator changed the services it sends this worker.
    Assigned {
        /// Every service assigned now.
        services: Vec<String>,
    },
    /// Coordinator: the worker is draining: out of rotation, its answers still come.
    Draining {
        /// In words.
        reason: String,
    },
    /// A message that has no place here; logged and otherwise ignored.
    Unexpected(String),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Nothing heard for this long.
    Silent(Duration),
    /// The coordinator refused the link (`unknown_worker`, `protocol_version`).
    Rejected {
        /// Machine-readable.
        reason: String,
        /// In words.
        message: String,
    },
    /// The worker drained: goodbye acknowledged, every answer sent.
    Drained,
    /// The other end said goodbye without being asked to drain.
    PeerGoodbye(String),
    /// The other end broke the protocol (no hello first, an unexpected first message).
    Protocol(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Silent(d) => write!(f, "link silent for {} ms", d.as_millis()),
            End::Rejected { reason, message } => write!(f, "link rejected ({reason}): {message}"),
            End::Drained => f.write_str("drained"),
            End::PeerGoodbye(r) => write!(f, "the other end said goodbye: {r}"),
            End::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

/// One link session.
#[derive(Debug, Clone)]
pub struct Session {
    side: Side,
    phase: Phase,
    ping_interval: Duration,
    ping_misses: u32,
    last_heard: Instant,
    next_ping: Instant,
    /// Worker: requests delivered and not yet answered.
    in_flight: u32,
    /// Worker: its id, sent in the hello.
    worker_id: String,
    /// Worker: the coordinator it registered with; a challenge from another is refused.
    expect_coordinator: Option<String>,
    /// Worker: whether the hello has gone out.
    proved: bool,
}

impl Session {
    /// The coordinator's end, opened at `now`, and the challenge it sends first (`nonce`:
    /// fresh random, never reused); it then waits for the hello.
    pub fn coordinator(
        now: Instant,
        ping_interval: Duration,
        ping_misses: u32,
        coordinator_id: &str,
        nonce: &str,
    ) -> (Self, Action) {
        let session = Session {
            side: Side::Coordinator,
            phase: Phase::Handshake,
            ping_interval,
            ping_misses: ping_misses.max(1),
            last_heard: now,
            next_ping: now + ping_interval,
            in_flight: 0,
            worker_id: String::new(),
            expect_coordinator: None,
            proved: false,
        };
        let challenge = LinkMessage::Challenge {
            coordinator_id: coordinator_id.to_owned(),
            nonce: nonce.to_owned(),
        };
        (session, Action::Send(challenge, Bytes::new()))
    }

    /// The worker's end, connected at `now` to `coordinator` (when it knows which); it waits
    /// for the challenge.
    pub fn worker(now: Instant, worker_id: &str, coordinator: Option<&str>) -> Self {
        Session {
            side: Side::Worker,
            phase: Phase::Handshake,
            ping_interval: Duration::from_secs(1),
            ping_misses: DEFAULT_PING_MISSES,
            last_heard: now,
            next_ping: now,
            in_flight: 0,
            worker_id: worker_id.to_owned(),
            expect_coordinator: coordinator.map(str::to_owned),
            proved: false,
        }
    }

    /// Worker: the hello answering the challenge, with the application's `signature` of it.
    pub fn prove(&mut self, signature: String) -> Vec<Action> {
        if self.side != Side::Worker || self.phase != Phase::Handshake || self.proved {
            return Vec::new();
        }
        self.proved = true;
        vec![Action::Send(
            LinkMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                worker_id: self.worker_id.clone(),
                signature,
            },
            Bytes::new(),
        )]
    }

    /// How often the coordinator pings, as far as this end knows (the worker learns it from the
    /// welcome). Loops that tick at this period instead of sleeping until
    /// [`Session::poll_timeout`] see silence and send pings on time within one interval.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// How long silence may last before the link is given up.
    pub fn silence_limit(&self) -> Duration {
        match self.phase {
            Phase::Handshake => HANDSHAKE_TIMEOUT,
            _ => self.ping_interval.saturating_mul(self.ping_misses),
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session is past its handshake and not over.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Draining { .. })
    }

    /// When [`Session::on_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let silent_at = self.last_heard + self.silence_limit();
        if self.side == Side::Coordinator && self.is_open() {
            silent_at.min(self.next_ping)
        } else {
            silent_at
        }
    }

    /// Time passed: gives the link up when silent too long, pings when a ping is due.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.is_closed() {
            return Vec::new();
        }
        let limit = self.silence_limit();
        if now.saturating_duration_since(self.last_heard) >= limit {
            return self.close(End::Silent(limit));
        }
        // A quarter interval early counts as on time: a loop ticking every interval pings
        // once a tick even when its ticks fall a little before `now + interval` of the last.
        if self.side == Side::Coordinator
            && self.is_open()
            && now + self.ping_interval / 4 >= self.next_ping
        {
            self.next_ping = now + self.ping_interval;
            return vec![Action::Ping];
        }
        Vec::new()
    }

    /// Something other than a message arrived (a ping, a pong): the other end is alive.
    pub fn on_traffic(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A binary frame arrived: decoded and handled. A frame that does not decode still shows
    /// the other end is alive; it is reported as [`Event::Unexpected`] and otherwise ignored.
    pub fn on_frame(&mut self, now: Instant, frame: &Bytes) -> Vec<Action> {
        match super::decode_bytes(frame) {
            Ok(msg) => self.on_message(now, msg),
            Err(e) => {
                self.on_traffic(now);
                vec![Action::Deliver(Event::Unexpected(format!(
                    "undecodable frame: {e}"
                )))]
            }
        }
    }

    /// A message arrived (its body attached, see [`super::decode_bytes`]).
    pub fn on_message(&mut self, now: Instant, msg: LinkMessage) -> Vec<Action> {
        if self.is_closed() {
            return Vec::new();
        }
        self.last_heard = now;
        match (self.side, self.phase, msg) {
            (
                Side::Coordinator,
                Phase::Handshake,
                LinkMessage::Hello {
                    protocol_version,
                    worker_id,
                    signature,
                },
            ) => {
                if protocol_version == PROTOCOL_VERSION {
                    vec![Action::Deliver(Event::Hello {
                        worker_id,
                        signature,
                    })]
                } else {
                    self.reject(
                        "protocol_version",
                        format!(
                            "this coordinator speaks link protocol {PROTOCOL_VERSION}, the worker {protocol_version}; upgrade the older side"
                        ),
                    )
                }
            }
            (
                Side::Worker,
                Phase::Handshake,
                LinkMessage::Challenge {
                    coordinator_id,
                    nonce,
                },
            ) if !self.proved => match &self.expect_coordinator {
                Some(expected) if *expected != coordinator_id => {
                    self.close(End::Protocol(format!(
                        "challenged by coordinator {coordinator_id:?}, registered with {expected:?}"
                    )))
                }
                _ => vec![Action::Deliver(Event::Challenge {
                    coordinator_id,
                    nonce,
                })],
            },
            // A reject may come at any time: a worker the coordinator no longer knows.
            (_, _, LinkMessage::Reject { reason, message }) => {
                self.close(End::Rejected { reason, message })
            }
            (
                Side::Worker,
                Phase::Handshake,
                LinkMessage::Welcome {
                    coordinator_id,
                    ping_interval_ms,
                    ping_misses,
                    ..
                },
            ) => {
                self.take_pings(ping_interval_ms, ping_misses);
                self.phase = Phase::Open;
                vec![Action::Deliver(Event::Welcome { coordinator_id })]
            }
            (_, Phase::Handshake, other) => self.close(End::Protocol(format!(
                "unexpected first message {}",
                kind(&other)
            ))),
            (Side::Worker, _, LinkMessage::Request { id, call }) => {
                self.in_flight += 1;
                vec![Action::Deliver(Event::Request { id, call })]
            }
            (Side::Worker, Phase::Draining { .. }, LinkMessage::Goodbye { .. }) => {
                self.phase = Phase::Draining { acknowledged: true };
                self.maybe_drained()
            }
            (Side::Worker, _, LinkMessage::Goodbye { reason }) => {
                self.close(End::PeerGoodbye(reason))
            }
            (Side::Coordinator, _, LinkMessage::Response { id, reply }) => {
                vec![Action::Deliver(Event::Response { id, reply })]
            }
            (Side::Coordinator, _, LinkMessage::Progress { id, done, total }) => {
                vec![Action::Deliver(Event::Progress { id, done, total })]
            }
            (
                Side::Coordinator,
                _,
                LinkMessage::Heartbeat {
                    current_load,
                    active_requests,
                    heartbeats_failed,
                },
            ) => vec![Action::Deliver(Event::Heartbeat {
                current_load,
                active_requests,
                heartbeats_failed,
            })],
            (
                Side::Worker,
                _,
                LinkMessage::Tune {
                    ping_interval_ms,
                    ping_misses,
                },
            ) => {
                self.take_pings(ping_interval_ms, ping_misses);
                vec![Action::Deliver(Event::Tuned {
                    ping_interval: self.ping_interval,
                })]
            }
            (Side::Worker, Phase::Open, LinkMessage::Assign { services }) => {
                vec![Action::Deliver(Event::Assigned { services })]
            }
            (Side::Coordinator, Phase::Open, LinkMessage::Goodbye { reason }) => {
                self.phase = Phase::Draining {
                    acknowledged: false,
                };
                // The acknowledgement goes out behind every request already queued for the
                // worker, so once it has it, nothing new is coming.
                vec![
                    Action::Deliver(Event::Draining { reason }),
                    Action::Send(
                        LinkMessage::Goodbye {
                            reason: "acknowledged".into(),
                        },
                        Bytes::new(),
                    ),
                ]
            }
            (_, _, other) => vec![Action::Deliver(Event::Unexpected(kind(&other).to_owned()))],
        }
    }

    /// Coordinator: accepts the worker that said hello.
    pub fn accept(&mut self, now: Instant, coordinator_id: &str) -> Vec<Action> {
        if self.side != Side::Coordinator || self.phase != Phase::Handshake {
            return Vec::new();
        }
        self.phase = Phase::Open;
        self.next_ping = now + self.ping_interval;
        vec![Action::Send(
            LinkMessage::Welcome {
                protocol_version: PROTOCOL_VERSION,
                coordinator_id: coordinator_id.to_owned(),
                ping_interval_ms: self.ping_interval.as_millis() as u64,
                ping_misses: self.ping_misses,
            },
            Bytes::new(),
        )]
    }

    /// Worker: the coordinator's ping numbers (a welcome's or a tune's); 0 misses keeps ours.
    fn take_pings(&mut self, interval_ms: u64, misses: u32) {
        self.ping_interval =
            Duration::from_millis(interval_ms).clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL);
        if misses > 0 {
            self.ping_misses = misses;
        }
    }

    /// Coordinator: pings every `interval` from now on and tells the worker, which judges
    /// silence by it. Nothing to do before the welcome (which carries the interval) or when
    /// the interval is unchanged.
    pub fn retune(&mut self, now: Instant, interval: Duration) -> Vec<Action> {
        let interval = interval.max(MIN_PING_INTERVAL);
        if self.side != Side::Coordinator || self.phase != Phase::Open {
            if self.side == Side::Coordinator && self.phase == Phase::Handshake {
                self.ping_interval = interval;
            }
            return Vec::new();
        }
        if interval == self.ping_interval {
            return Vec::new();
        }
        self.ping_interval = interval;
        self.next_ping = now + interval;
        // Heard from now: a longer interval must not find the link already "silent".
        self.last_heard = self
            .last_heard
            .max(now.checked_sub(interval).unwrap_or(now));
        vec![Action::Send(
            LinkMessage::Tune {
                ping_interval_ms: interval.as_millis() as u64,
                ping_misses: self.ping_misses,
            },
            Bytes::new(),
        )]
    }

    /// Coordinator: refuses the link, saying why.
    pub fn reject(&mut self, reason: &str, message: String) -> Vec<Action> {
        let mut out = vec![Action::Send(
            LinkMessage::Reject {
                reason: reason.to_owned(),
                message: message.clone(),
            },
            Bytes::new(),
        )];
        out.extend(self.close(End::Rejected {
            reason: reason.to_owned(),
            message,
        }));
        out
    }

    /// Worker: stop taking work. Says goodbye; the session closes once the coordinator has
    /// acknowledged and every request is answered.
    pub fn drain(&mut self) -> Vec<Action> {
        match (self.side, self.phase) {
            (Side::Worker, Phase::Open) => {
                self.phase = Phase::Draining {
                    acknowledged: false,
                };
                vec![Action::Send(
                    LinkMessage::Goodbye {
                        reason: "draining".into(),
                    },
                    Bytes::new(),
                )]
            }
            (Side::Worker, Phase::Handshake) => self.close(End::Drained),
            _ => Vec::new(),
        }
    }

    /// Worker: the answer to a request has been queued on the link by whoever ran it (the
    /// worker's call tasks write their answers straight to the link's writer, a hand-off less
    /// per call); the session only counts it, and closes a drained link once none is left.
    pub fn answer_sent(&mut self) -> Vec<Action> {
        if self.side != Side::Worker || self.is_closed() {
            return Vec::new();
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.maybe_drained()
    }

    /// Worker: requests delivered and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    fn maybe_drained(&mut self) -> Vec<Action> {
        if self.phase == (Phase::Draining { acknowledged: true }) && self.in_flight == 0 {
            self.close(End::Drained)
        } else {
            Vec::new()
        }
    }

    fn close(&mut self, end: End) -> Vec<Action> {
        self.phase = Phase::Closed;
        vec![Action::Close(end)]
    }
}

/// A message's type, for logs.
fn kind(msg: &LinkMessage) -> &'static str {
    match msg {
        LinkMessage::Challenge { .. } => "challenge",
        LinkMessage::Hello { .. } => "hello",
        LinkMessage::Welcome { .. } => "welcome",
        LinkMessage::Reject { .. } => "reject",
        LinkMessage::Request { .. } => "request",
        LinkMessage::Response { .. } => "response",
        LinkMessage::Progress { .. } => "progress",
        LinkMessage::Goodbye { .. } => "goodbye",
        LinkMessage::Heartbeat { .. } => "heartbeat",
        LinkMessage::Tune { .. } => "tune",
        LinkMessage::Assign { .. } => "assign",
    }
}

#[cfg(test)]
mod tests {
    //! Both ends driven by hand, frames passed between them as values: no sockets, no clock.
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn sent(actions: &[Action]) -> Vec<LinkMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m, _) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn coordinator(t0: Instant) -> Session {
        Session::coordinator(t0, SEC, 5, "c1", "n0nce").0
    }

    /// A coordinator and a worker past the handshake, at `t0`.
    fn open_pair(t0: Instant) -> (Session, Session) {
        let (mut c, challenge) = Session::coordinator(t0, SEC, 5, "c1", "n0nce");
        let mut w = Session::worker(t0, "w1", Some("c1"));
        let Action::Send(challenge, _) = challenge else {
            panic!("challenge first")
        };
        assert_eq!(
            w.on_message(t0, challenge),
            vec![Action::Deliver(Event::Challenge {
                coordinator_id: "c1".into(),
                nonce: "n0nce".into()
            })]
        );
        let hello = sent(&w.prove("sig".into()));
        assert!(w.prove("again".into()).is_empty(), "one hello only");
        assert_eq!(
            c.on_message(t0, hello[0].clone()),
            vec![Action::Deliver(Event::Hello {
                worker_id: "w1".into(),
                signature: "sig".into()
            })]
        );
        let welcome = sent(&c.accept(t0, "c1"));
        let got = w.on_message(t0, welcome[0].clone());
        assert_eq!(
            got,
            vec![Action::Deliver(Event::Welcome {
                coordinator_id: "c1".into()
            })]
        );
        (c, w)
    }

    #[test]
    fn handshake_then_requests_and_answers() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        assert!(c.is_open() && w.is_open());
        let call = ServiceCall::post("echo", None, Bytes::from_static(b"x"));
        let got = w.on_message(
            t0,
            LinkMessage::Request {
                id: 1,
                call: call.clone(),
            },
        );
        assert_eq!(got, vec![Action::Deliver(Event::Request { id: 1, call })]);
        assert_eq!(w.in_flight(), 1);
        // The call's task writes the response frame; the session only counts it.
        let reply = ServiceReply::ok(None, Bytes::from_static(b"x"));
        let frame = Bytes::from(super::super::encode_response(1, &reply));
        assert!(w.answer_sent().is_empty());
        assert_eq!(w.in_flight(), 0);
        let got = c.on_frame(t0, &frame);
        let [Action::Deliver(Event::Response { id: 1, reply: r })] = &got[..] else {
            panic!("a response: {got:?}")
        };
        assert_eq!(&r.body[..], b"x");
        assert_eq!(r, &reply);
    }

    #[test]
    fn a_hello_of_another_version_is_rejected_and_closes() {
        let t0 = Instant::now();
        let mut c = coordinator(t0);
        let out = c.on_message(
            t0,
            LinkMessage::Hello {
                protocol_version: 1,
                worker_id: "w".into(),
                signature: String::new(),
            },
        );
        assert!(
            matches!(&sent(&out)[0], LinkMessage::Reject { reason, .. } if reason == "protocol_version")
        );
        assert!(matches!(
            out.last(),
            Some(Action::Close(End::Rejected { .. }))
        ));
        assert!(c.is_closed());
        assert!(
            c.on_message(t0, LinkMessage::Goodbye { reason: "x".into() })
                .is_empty()
        );
    }

    #[test]
    fn a_first_message_other_than_hello_is_a_protocol_error() {
        let t0 = Instant::now();
        let mut c = coordinator(t0);
        let out = c.on_message(t0, LinkMessage::Goodbye { reason: "x".into() });
        assert!(matches!(out[..], [Action::Close(End::Protocol(_))]));
    }

    #[test]
    fn a_retune_reaches_the_worker_and_both_ends_judge_silence_by_it() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        assert!(
            c.retune(t0, c.ping_interval()).is_empty(),
            "unchanged: no frame"
        );
        let out = c.retune(t0, 8 * SEC);
        let [
            LinkMessage::Tune {
                ping_interval_ms, ..
            },
        ] = &sent(&out)[..]
        else {
            panic!("a tune: {out:?}")
        };
        assert_eq!(*ping_interval_ms, 8_000);
        // No ping before the new interval is up, one when it is.
        assert!(c.on_timeout(t0 + 5 * SEC).is_empty());
        assert_eq!(c.on_timeout(t0 + 8 * SEC), vec![Action::Ping]);
        let got = w.on_message(t0, sent(&out)[0].clone());
        assert_eq!(
            got,
            vec![Action::Deliver(Event::Tuned {
                ping_interval: 8 * SEC
            })]
        );
        assert_eq!(w.silence_limit(), 8 * SEC * DEFAULT_PING_MISSES);
        assert!(w.on_timeout(t0 + 39 * SEC).is_empty(), "not silent yet");
        // Shorter again: the coordinator gives the link a full new window, not an instant death.
        c.on_traffic(t0 + 8 * SEC);
        c.retune(t0 + 30 * SEC, SEC);
        assert_eq!(c.on_timeout(t0 + 31 * SEC), vec![Action::Ping]);
    }

    #[test]
    fn an_assignment_reaches_an_open_worker_only() {
        let t0 = Instant::now();
        let (_, mut w) = open_pair(t0);
        let msg = LinkMessage::Assign {
            services: vec!["echo".into(), "ocr".into()],
        };
        // It goes over the wire as one small frame and comes back the same.
        let frame = Bytes::from(super::super::encode(&msg, &[]));
        assert_eq!(
            w.on_frame(t0, &frame),
            vec![Action::Deliver(Event::Assigned {
                services: vec!["echo".into(), "ocr".into()]
            })]
        );
        // Before the welcome it has no place.
        let mut fresh = Session::worker(t0, "w1", Some("c1"));
        let out = fresh.on_message(t0, msg);
        assert!(
            !out.iter()
                .any(|a| matches!(a, Action::Deliver(Event::Assigned { .. }))),
            "{out:?}"
        );
    }

    #[test]
    fn absurd_ping_numbers_from_the_coordinator_are_bounded_not_a_panic() {
        let t0 = Instant::now();
        let (_, mut w) = open_pair(t0);
        let got = w.on_message(
            t0,
            LinkMessage::Tune {
                ping_interval_ms: u64::MAX,
                ping_misses: u32::MAX,
            },
        );
        assert_eq!(
            got,
            vec![Action::Deliver(Event::Tuned {
                ping_interval: MAX_PING_INTERVAL
            })]
        );
        assert_eq!(w.silence_limit(), MAX_PING_INTERVAL * u32::MAX);
        assert!(w.poll_timeout() > t0);
        assert!(w.on_timeout(t0 + 10 * SEC).is_empty());
    }

    #[test]
    fn heartbeats_reach_the_coordinator_and_a_late_reject_closes_the_worker() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        let got = c.on_message(
            t0 + SEC,
            LinkMessage::Heartbeat {
                current_load: 0.5,
                active_requests: 2,
                heartbeats_failed: 1,
            },
        );
        assert_eq!(
            got,
            vec![Action::Deliver(Event::Heartbeat {
                current_load: 0.5,
                active_requests: 2,
                heartbeats_failed: 1
            })]
        );
        let out = w.on_message(
            t0,
            LinkMessage::Reject {
                reason: "unknown_worker".into(),
                message: "register again".into(),
            },
        );
        assert!(matches!(&out[..], [Action::Close(End::Rejected { .. })]));
        assert!(w.is_closed());
    }

    #[test]
    fn a_worker_told_unknown_must_register_again() {
        let t0 = Instant::now();
        let mut w = Session::worker(t0, "w", None);
        let out = w.on_message(
            t0,
            LinkMessage::Reject {
                reason: "unknown_worker".into(),
                message: "register first".into(),
            },
        );
        assert!(
            matches!(&out[..], [Action::Close(End::Rejected { reason, .. })] if reason == "unknown_worker")
        );
    }

    #[test]
    fn one_silence_rule_at_both_ends() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        assert_eq!(c.silence_limit(), 5 * SEC);
        assert_eq!(
            w.silence_limit(),
            5 * SEC,
            "the worker learns the rule from the welcome"
        );
        // The coordinator pings every interval while the worker's pongs keep it alive.
        for s in 1..=10 {
            let now = t0 + SEC * s;
            assert_eq!(c.poll_timeout(), now);
            assert_eq!(c.on_timeout(now), vec![Action::Ping]);
            c.on_traffic(now); // the pong
            w.on_traffic(now); // the ping
        }
        // Then nothing from either side for 5 intervals.
        let last = t0 + SEC * 10;
        for s in 1..5 {
            assert_eq!(c.on_timeout(last + SEC * s), vec![Action::Ping]);
            assert!(w.on_timeout(last + SEC * s).is_empty());
        }
        assert_eq!(w.poll_timeout(), last + 5 * SEC);
        assert_eq!(
            c.on_timeout(last + 5 * SEC),
            vec![Action::Close(End::Silent(5 * SEC))]
        );
        assert_eq!(
            w.on_timeout(last + 5 * SEC),
            vec![Action::Close(End::Silent(5 * SEC))]
        );
    }

    #[test]
    fn the_handshake_times_out() {
        let t0 = Instant::now();
        let mut c = coordinator(t0);
        assert_eq!(c.poll_timeout(), t0 + HANDSHAKE_TIMEOUT);
        assert!(
            c.on_timeout(t0 + 9 * SEC).is_empty(),
            "no pings before the welcome"
        );
        assert!(matches!(
            c.on_timeout(t0 + HANDSHAKE_TIMEOUT)[..],
            [Action::Close(End::Silent(_))]
        ));
    }

    #[test]
    fn drain_finishes_work_then_closes_after_the_acknowledgement() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        let call = ServiceCall::post("echo", None, Bytes::new());
        w.on_message(
            t0,
            LinkMessage::Request {
                id: 1,
                call: call.clone(),
            },
        );
        let bye = sent(&w.drain());
        assert!(matches!(&bye[..], [LinkMessage::Goodbye { reason }] if reason == "draining"));
        assert!(w.drain().is_empty(), "draining twice says nothing more");
        // The coordinator takes the worker out of rotation and acknowledges.
        let out = c.on_message(t0, bye[0].clone());
        assert!(matches!(&out[0], Action::Deliver(Event::Draining { .. })));
        let ack = sent(&out);
        // A request queued before the goodbye still arrives and is served.
        w.on_message(t0, LinkMessage::Request { id: 2, call });
        assert!(
            w.on_message(t0, ack[0].clone()).is_empty(),
            "two requests still running"
        );
        assert!(
            !w.answer_sent()
                .iter()
                .any(|a| matches!(a, Action::Close(_)))
        );
        let out = w.answer_sent();
        assert!(matches!(out.last(), Some(Action::Close(End::Drained))));
        assert!(w.is_closed());
    }

    #[test]
    fn answers_sent_by_their_call_tasks_are_counted_and_close_a_drained_link() {
        let t0 = Instant::now();
        let (mut c, mut w) = open_pair(t0);
        let call = ServiceCall::post("echo", None, Bytes::new());
        for id in [1, 2] {
            w.on_message(
                t0,
                LinkMessage::Request {
                    id,
                    call: call.clone(),
                },
            );
        }
        assert_eq!(w.in_flight(), 2);
        let bye = sent(&w.drain());
        let ack = sent(&c.on_message(t0, bye[0].clone()));
        assert!(
            w.on_message(t0, ack[0].clone()).is_empty(),
            "two still running"
        );
        assert!(w.answer_sent().is_empty(), "one still running");
        assert_eq!(w.in_flight(), 1);
        assert!(matches!(
            &w.answer_sent()[..],
            [Action::Close(End::Drained)]
        ));
        assert!(w.is_closed());
        assert!(w.answer_sent().is_empty(), "nothing after the close");
    }

    #[test]
    fn frames_are_decoded_and_garbage_is_only_reported() {
        let t0 = Instant::now();
        let mut c = coordinator(t0);
        let hello = Bytes::from(super::super::encode(
            &LinkMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                worker_id: "w".into(),
                signature: "s".into(),
            },
            &[],
        ));
        assert!(matches!(
            &c.on_frame(t0, &hello)[..],
            [Action::Deliver(Event::Hello { .. })]
        ));
        let later = t0 + 3 * SEC;
        let out = c.on_frame(later, &Bytes::from_static(b"\0\0"));
        assert!(matches!(&out[..], [Action::Deliver(Event::Unexpected(_))]));
        assert_eq!(
            c.poll_timeout(),
            later + HANDSHAKE_TIMEOUT,
            "garbage still counts as heard"
        );
    }

    #[test]
    fn a_worker_refuses_a_challenge_from_another_coordinator() {
        let t0 = Instant::now();
        let mut w = Session::worker(t0, "w", Some("c1"));
        let out = w.on_message(
            t0,
            LinkMessage::Challenge {
                coordinator_id: "rogue".into(),
                nonce: "n".into(),
            },
        );
        assert!(matches!(&out[..], [Action::Close(End::Protocol(m))] if m.contains("rogue")));
        // And a coordinator never takes a challenge.
        let mut c = coordinator(t0);
        let out = c.on_message(
            t0,
            LinkMessage::Challenge {
                coordinator_id: "c2".into(),
                nonce: "n".into(),
            },
        );
        assert!(matches!(&out[..], [Action::Close(End::Protocol(_))]));
    }

    #[test]
    fn a_goodbye_the_worker_did_not_ask_for_ends_its_session() {
        let t0 = Instant::now();
        let (_, mut w) = open_pair(t0);
        let out = w.on_message(
            t0,
            LinkMessage::Goodbye {
                reason: "stopping".into(),
            },
        );
        assert_eq!(
            out,
            vec![Action::Close(End::PeerGoodbye("stopping".into()))]
        );
    }
}
