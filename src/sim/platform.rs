//! A minimal HJ 212 platform for the demo, tests and benchmarks: accepts field units on TCP,
//! acknowledges every upload that asks for it (9014 with the same QN, after an optional delay),
//! and keeps what it received: counts per command and the last few packets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::hj212::{Cp, Decoded, Decoder, Packet};

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

/// Serves on `listener` until the task is dropped. `ack_delay` slows each acknowledgement.
pub fn serve(listener: TcpListener, ack_delay: Duration, keep_all: bool) -> Platform {
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
                        if packet.wants_ack() {
                            if !ack_delay.is_zero() {
                                tokio::time::sleep(ack_delay).await;
                            }
                            let ack = Packet {
                                qn: packet.qn.clone(),
                                st: "91".into(),
                                // Heartbeats (2025) are answered with 9013, uploads with 9014.
                                cn: if packet.cn == "9015" { "9013" } else { "9014" }.into(),
                                pw: packet.pw.clone(),
                                mn: packet.mn.clone(),
                                // Answered in the version of the frame (2017: 4, 2025: 8).
                                flag: Some(packet.flag.unwrap_or(4) & !3),
                                packets: None,
                                rf: false,
                                cp: Cp::default(),
                            };
                            let Ok(frame) = ack.encode() else { continue };
                            if wr.write_all(frame.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    platform
}
