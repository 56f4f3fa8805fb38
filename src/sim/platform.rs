//! A minimal HJ 212 platform for the demo, tests and benchmarks: accepts field units on TCP,
//! answers per its [`Behaviour`] (after an optional delay), and keeps what it received: counts
//! per command and the last few packets.
//!
//! Real platforms differ in what they answer: many have handlers only for the data commands
//! and refuse the rest (`9011 QnRtn=2`), some never answer notices, some acknowledge only the
//! records they store. The behaviours model those, besides the platform that acknowledges
//! everything.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::hj212::{Cp, Decoded, Decoder, Packet};

/// What the platform answers to a packet that asks for an answer (Flag bit A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 9014 for every upload, 9013 for heartbeats (9015).
    AcknowledgesAll,
    /// Handlers for the data commands only (2011, 2021, 2031, 2041, 2051, 2061): anything
    /// else that asks (2081, 9015, …) gets `9011 QnRtn=2`, as an independent platform
    /// did.
    RefusesNotices,
    /// 9014 for the data commands; nothing at all for anything else.
    SilentOnNotices,
    /// 9014 for the records it stores (2051, 2061, 2031) and nothing for anything else.
    AcknowledgesStoredDataOnly,
}

const DATA: [&str; 6] = ["2011", "2021", "2031", "2041", "2051", "2061"];
const STORED: [&str; 3] = ["2031", "2051", "2061"];

impl Behaviour {
    /// The CN of the answer to `p` (which asks for one), if any.
    fn answer(self, p: &Packet) -> Option<Answer> {
        let data = DATA.contains(&p.cn.as_str());
        match self {
            Behaviour::AcknowledgesAll if p.cn == "9015" => Some(Answer::Cn("9013")),
            Behaviour::AcknowledgesAll => Some(Answer::Cn("9014")),
            Behaviour::RefusesNotices if data => Some(Answer::Cn("9014")),
            Behaviour::RefusesNotices => Some(Answer::Refused),
            Behaviour::SilentOnNotices => data.then_some(Answer::Cn("9014")),
            Behaviour::AcknowledgesStoredDataOnly => {
                STORED.contains(&p.cn.as_str()).then_some(Answer::Cn("9014"))
            }
        }
    }
}

enum Answer {
    Cn(&'static str),
    /// `9011 QnRtn=2`.
    Refused,
}

/// What the platform has seen.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub by_cn: BTreeMap<String, u64>,
    pub last: VecDeque<Packet>,
    pub garbage: u64,
    pub connections: u64,
}

/// A running platform.
#[derive(Debug, Clone)]
pub struct Platform {
    pub received: Arc<Mutex<Received>>,
    /// Every packet, in arrival order (kept only when `keep_all`).
    pub all: Arc<Mutex<Vec<Packet>>>,
}

impl Platform {
    pub fn snapshot(&self) -> Received {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serves on `listener` until the task is dropped, acknowledging everything. `ack_delay` slows
/// each answer.
pub fn serve(listener: TcpListener, ack_delay: Duration, keep_all: bool) -> Platform {
    serve_as(listener, Behaviour::AcknowledgesAll, ack_delay, keep_all)
}

/// Serves on `listener` with the given behaviour.
pub fn serve_as(
    listener: TcpListener,
    behaviour: Behaviour,
    ack_delay: Duration,
    keep_all: bool,
) -> Platform {
    let platform = Platform { received: Arc::default(), all: Arc::default() };
    let p = platform.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            p.received.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
            let p = p.clone();
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.into_split();
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    decoder.push(&buf[..n]);
                    while let Some(d) = decoder.next_frame() {
                        let packet = match d {
                            Decoded::Packet(packet) => packet,
                            Decoded::Skipped { .. } => {
                                p.received.lock().unwrap_or_else(|e| e.into_inner()).garbage += 1;
                                continue;
                            }
                        };
                        {
                            let mut r = p.received.lock().unwrap_or_else(|e| e.into_inner());
                            *r.by_cn.entry(packet.cn.clone()).or_default() += 1;
                            r.last.push_back(packet.clone());
                            if r.last.len() > 20 {
                                r.last.pop_front();
                            }
                        }
                        if keep_all {
                            p.all.lock().unwrap_or_else(|e| e.into_inner()).push(packet.clone());
                        }
                        if !packet.wants_ack() {
                            continue;
                        }
                        let Some(answer) = behaviour.answer(&packet) else { continue };
                        let (cn, cp) = match answer {
                            Answer::Cn(cn) => (cn, Cp::default()),
                            Answer::Refused => ("9011", Cp::single(&[("QnRtn", "2")])),
                        };
                        let reply = Packet {
                            qn: packet.qn.clone(),
                            st: "91".into(),
                            cn: cn.into(),
                            pw: packet.pw.clone(),
                            mn: packet.mn.clone(),
                            // Answered in the version of the frame (2017: 4, 2025: 8).
                            flag: Some(packet.flag.unwrap_or(4) & !3),
                            packets: None,
                            rf: false,
                            cp,
                        };
                        let Ok(frame) = reply.encode() else { continue };
                        if !ack_delay.is_zero() {
                            tokio::time::sleep(ack_delay).await;
                        }
                        if wr.write_all(frame.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    platform
}
