//! A loopback HJ 212 platform for tests that need to see everything a link sends and to send it
//! requests: it keeps every packet in arrival order, answers what asks for an answer (9014 for
//! uploads and notices), and writes the requests a test gives it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cems_gateway::hj212::{Cp, Decoded, Decoder, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct Platform {
    pub address: String,
    received: Arc<Mutex<Vec<Packet>>>,
    requests: mpsc::UnboundedSender<String>,
}

impl Platform {
    pub async fn start() -> Platform {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (requests, mut req_rx) = mpsc::unbounded_channel::<String>();
        let rec = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (mut rd, mut wr) = stream.into_split();
                let mut decoder = Decoder::default();
                let mut buf = vec![0u8; 8192];
                loop {
                    tokio::select! {
                        n = rd.read(&mut buf) => {
                            let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                            decoder.push(&buf[..n]);
                            while let Some(d) = decoder.next_frame() {
                                let Decoded::Packet(p) = d else { continue };
                                rec.lock().unwrap().push(p.clone());
                                if p.wants_ack() {
                                    let cn = if p.cn == "9015" { "9013" } else { "9014" };
                                    let ack = Packet { qn: p.qn.clone(), st: "91".into(), cn: cn.into(), pw: p.pw.clone(), mn: p.mn.clone(), flag: Some(p.flag.unwrap_or(4) & !3), packets: None, rf: false, cp: Cp::default() };
                                    if wr.write_all(ack.encode().unwrap().as_bytes()).await.is_err() { break; }
                                }
                            }
                        }
                        Some(req) = req_rx.recv() => {
                            if wr.write_all(req.as_bytes()).await.is_err() { break; }
                        }
                    }
                }
            }
        });
        Platform { address, received, requests }
    }

    /// Every packet so far, in arrival order.
    pub fn all(&self) -> Vec<Packet> {
        self.received.lock().unwrap().clone()
    }

    pub fn packets(&self, cn: &str) -> Vec<Packet> {
        self.all().into_iter().filter(|p| p.cn == cn).collect()
    }

    /// The packets answering (or carrying) request `qn`, in order.
    pub fn replies(&self, qn: &str) -> Vec<Packet> {
        self.all().into_iter().filter(|p| p.qn.as_deref() == Some(qn)).collect()
    }

    /// Sends a request (2017 profile, Flag 5) to the connected field unit.
    pub fn request(&self, mn: &str, qn: &str, cn: &str, cp: &[(&str, &str)]) {
        let p = Packet {
            qn: Some(qn.into()),
            st: "31".into(),
            cn: cn.into(),
            pw: "123456".into(),
            mn: mn.into(),
            flag: Some(5),
            packets: None,
            rf: false,
            cp: Cp::single(cp),
        };
        self.requests.send(p.encode().unwrap()).unwrap();
    }

    /// Waits (up to `limit`) until `check` holds for the packets so far; the packets then.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&[Packet]) -> bool,
    ) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let all = self.all();
            if check(&all) {
                return all;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the platform never saw {what}: {:#?}",
                    all.iter().map(|p| format!("{} {}", p.cn, p.cp)).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
