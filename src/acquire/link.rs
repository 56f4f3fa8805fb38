//! One physical connection of a bus and the requests made over it, each with a deadline.
//!
//! After a timeout or a garbled reply the connection is dropped: on TCP the next request goes
//! over a fresh socket, so a late reply can never be taken for the answer to the next
//! request (tokio-modbus #324); on a serial line the port is reopened after a quiet period and
//! its input queue flushed, discarding stale bytes.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{SlaveContext, rtu, tcp};
use tokio_modbus::{ExceptionCode, Slave};
use tokio_serial::{SerialPort, SerialPortBuilderExt};

use super::ascii::AsciiConn;
use super::plan::{BlockResult, DevicePlan};
use super::registers::Table;
use crate::config::{self, Bus, Parity, Protocol, SerialSettings};
use crate::model::{Sample, now_ms};

/// Why a request or a connection attempt failed.
#[derive(Debug, Error)]
pub enum PollError {
    #[error("connect to {endpoint} failed: {reason}")]
    Connect { endpoint: String, reason: std::io::Error },
    #[error("connect to {endpoint} timed out after {after:?}")]
    ConnectTimeout { endpoint: String, after: Duration },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("transport: {0}")]
    Transport(String),
    #[error("Modbus exception {0:?}")]
    Exception(ExceptionCode),
    #[error("reply has {got} registers, expected {expected}")]
    ShortReply { got: usize, expected: u16 },
    #[error("no reply line matched the pattern within {0:?}")]
    NoMatch(Duration),
}

impl PollError {
    /// Whether the bus itself (port or socket) could not be opened, as opposed to one device
    /// failing to answer on a working bus.
    pub fn is_bus_failure(&self) -> bool {
        matches!(self, PollError::Connect { .. } | PollError::ConnectTimeout { .. })
    }

    /// Whether the connection must be dropped: anything but a clean exception reply.
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, PollError::Exception(_))
    }

    /// What the error means on a bus of this kind and what an installer should check, for the
    /// probe and for the warning when a device is isolated.
    pub fn hint(&self, link: &config::Link) -> String {
        use config::Link as L;
        let serial = matches!(link, L::Rtu(_) | L::AsciiSerial(_) | L::Hj212Serial(_));
        match self {
            PollError::Connect { .. } | PollError::ConnectTimeout { .. } if serial => {
                "the serial port cannot be opened: check the path (prefer /dev/serial/by-id/…), that the \
                 adapter is plugged in, and that the user is in group dialout (the service's user is)"
                    .into()
            }
            PollError::Connect { .. } | PollError::ConnectTimeout { .. } => {
                "nothing accepted the connection: check the IP address and port, that the device is on \
                 and reachable (ping), and firewalls between"
                    .into()
            }
            PollError::Timeout(_) if serial => {
                "no reply: check the slave id, that baud rate, parity and stop bits match the analyzer's, \
                 the A/B wiring (swapped A and B give silence or garbage) and the 120 Ω terminators"
                    .into()
            }
            PollError::Timeout(_) => {
                "no reply: check the slave id (behind a gateway, the unit id of the device on its serial \
                 side) and, behind a serial server, its serial settings; a peer that does not speak \
                 Modbus at all may also stay silent"
                    .into()
            }
            PollError::Transport(_) => match link {
                L::Tcp { .. } => "the reply is not a Modbus TCP frame (or the peer closed the \
                    connection mid-reply): check that the address is the analyzer's Modbus TCP port \
                    (502 by default) and not another service's; a serial server or a DTU in \
                    transparent mode forwards RTU frames: use kind = \"rtu-over-tcp\""
                    .into(),
                L::RtuOverTcp { .. } => "the reply is not a Modbus RTU frame: check that the \
                    converter or DTU is in transparent mode (raw TCP server), not a Modbus TCP gateway \
                    (then use kind = \"tcp\") and not sending its own registration or heartbeat \
                    packets; its serial side must match the analyzer's baud rate and parity"
                    .into(),
                _ => "the reply is garbled: check that baud rate, parity and stop bits match the \
                    analyzer's, the A/B wiring and the terminators, and that no second master (a \
                    display, a PLC) polls the same line"
                    .into(),
            },
            PollError::Exception(ExceptionCode::IllegalDataAddress) => {
                "the analyzer has no register there: check the address (0-based: register 40001 is \
                 address 0) and the table (holding = FC03, input = FC04) in its manual"
                    .into()
            }
            PollError::Exception(ExceptionCode::IllegalFunction) => {
                "the analyzer does not answer this function: try the other table (holding = FC03, \
                 input = FC04)"
                    .into()
            }
            PollError::Exception(_) => {
                "the analyzer refused the request: see its manual for this exception".into()
            }
            PollError::ShortReply { .. } => {
                "the reply is shorter than asked: check the register map (addresses, types) against the \
                 manual; max_gap = 0 avoids reading registers between points"
                    .into()
            }
            PollError::NoMatch(_) => {
                "no reply line matched: check the request (and its line ending, e.g. \\r\\n) and the \
                 pattern against a reply captured with a terminal program"
                    .into()
            }
        }
    }
}

type Stream = Box<dyn AsyncReadWrite>;

/// A byte stream, serial or TCP.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug> AsyncReadWrite for T {}

enum Conn {
    Modbus(Context),
    Ascii(AsciiConn<Stream>),
}

/// The raw outcome of one poll: per block results, for the probe and for decoding.
#[derive(Debug)]
pub struct PollOutcome {
    pub ts_ms: i64,
    pub blocks: Vec<BlockResult>,
    pub samples: Vec<Sample>,
    /// The first error met, if any.
    pub error: Option<PollError>,
}

/// The connection of one bus, opened on demand.
pub struct Link {
    bus: Bus,
    conn: Option<Conn>,
    /// A serial port was dropped after an error: wait, then flush input, when reopening.
    dirty: bool,
    /// Earliest time the next connection attempt may be made.
    retry_at: Instant,
    backoff: Duration,
    /// When the last exchange ended: the next request waits until the bus's silence has
    /// passed since then (time spent decoding and scheduling counts towards it).
    quiet_since: Option<Instant>,
    /// The bus has not been reached yet, or the last connection attempt failed: the next
    /// connection is news. (A connection dropped on purpose after a timeout is reopened quietly.)
    down: bool,
}

const BACKOFF_START: Duration = Duration::from_millis(500);

impl Link {
    pub fn new(bus: Bus) -> Link {
        Link {
            bus,
            conn: None,
            dirty: false,
            retry_at: Instant::now(),
            backoff: BACKOFF_START,
            quiet_since: None,
            down: true,
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// True while a failed connection attempt's backoff is running.
    pub fn in_backoff(&self) -> bool {
        self.conn.is_none() && Instant::now() < self.retry_at
    }

    fn drop_conn(&mut self) {
        if self.conn.take().is_some() {
            self.dirty = true;
        }
    }

    async fn ensure(&mut self) -> Result<(), PollError> {
        if self.conn.is_some() {
            return Ok(());
        }
        match self.open().await {
            Ok(conn) => {
                let bus = &self.bus;
                if self.down {
                    tracing::info!(bus = %bus.name, endpoint = bus.link.endpoint(), "Bus connected.");
                } else {
                    tracing::debug!(bus = %bus.name, endpoint = bus.link.endpoint(), "Bus reopened after a failed request.");
                }
                self.conn = Some(conn);
                self.dirty = false;
                self.down = false;
                Ok(())
            }
            Err(e) => {
                self.down = true;
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(self.bus.reconnect_max);
                Err(e)
            }
        }
    }

    /// Quiet time before reusing a serial line after an error: long enough for a late reply to
    /// arrive and be flushed, short enough not to starve the other analyzers.
    fn quiet_period(&self) -> Duration {
        (self.bus.timeout / 4)
            .clamp(self.bus.inter_frame, Duration::from_millis(250).max(self.bus.inter_frame))
    }

    async fn open(&mut self) -> Result<Conn, PollError> {
        let bus = self.bus.clone();
        let quiet = self.dirty.then(|| self.quiet_period());
        let deadline = bus.timeout.max(Duration::from_secs(1));
        let modbus_rtu = |s: Stream| Conn::Modbus(rtu::attach(s));
        let conn = match &bus.link {
            config::Link::Rtu(s) => modbus_rtu(open_serial(s, quiet).await?),
            config::Link::AsciiSerial(s) => Conn::Ascii(AsciiConn::new(open_serial(s, quiet).await?)),
            config::Link::Tcp { address } => Conn::Modbus(tcp::attach(open_tcp(address, deadline).await?)),
            config::Link::RtuOverTcp { address } => modbus_rtu(open_tcp(address, deadline).await?),
            config::Link::AsciiTcp { address } => {
                Conn::Ascii(AsciiConn::new(open_tcp(address, deadline).await?))
            }
            config::Link::Hj212Listen { .. } | config::Link::Hj212Serial(_) => {
                return Err(PollError::Transport(
                    "an hj212 bus is not polled: its devices push frames".into(),
                ));
            }
        };
        Ok(conn)
    }

    /// Polls one device: every planned request in order, stopping at the first failure.
    pub async fn poll(&mut self, plan: &DevicePlan) -> PollOutcome {
        let ts_ms = now_ms();
        if let Err(e) = self.ensure().await {
            return PollOutcome {
                ts_ms,
                blocks: Vec::new(),
                samples: plan.comm_failure(ts_ms),
                error: Some(e),
            };
        }
        match &plan.device.protocol {
            Protocol::Modbus => self.poll_modbus(plan, ts_ms).await,
            Protocol::Hj212 { .. } => PollOutcome {
                ts_ms,
                blocks: Vec::new(),
                samples: plan.comm_failure(ts_ms),
                error: Some(PollError::Transport("an hj212 device is not polled: it pushes frames".into())),
            },
            Protocol::Ascii { request, pattern } => {
                self.silence().await;
                let Some(Conn::Ascii(conn)) = self.conn.as_mut() else {
                    unreachable!("config validation puts ascii devices on ascii buses only")
                };
                let result = conn.exchange(request, pattern, plan, self.bus.timeout).await;
                self.quiet_since = Some(Instant::now());
                match result {
                    Ok(captures) => {
                        self.backoff = BACKOFF_START;
                        PollOutcome {
                            ts_ms,
                            blocks: Vec::new(),
                            samples: plan.decode_ascii(&captures, ts_ms),
                            error: None,
                        }
                    }
                    Err(e) => {
                        // No matching reply before the deadline is a timeout: a late reply must
                        // not answer the next request, so the connection is not reused.
                        if e.breaks_connection() {
                            self.drop_conn();
                        }
                        PollOutcome {
                            ts_ms,
                            blocks: Vec::new(),
                            samples: plan.comm_failure(ts_ms),
                            error: Some(e),
                        }
                    }
                }
            }
        }
    }

    async fn poll_modbus(&mut self, plan: &DevicePlan, ts_ms: i64) -> PollOutcome {
        let mut blocks = Vec::with_capacity(plan.blocks.len());
        let mut error = None;
        for block in &plan.blocks {
            if error.is_some() {
                blocks.push(BlockResult::Lost);
                continue;
            }
            match self.read(plan.device.slave, block.table, block.start, block.count).await {
                Ok(regs) => blocks.push(BlockResult::Ok(regs)),
                Err(e) => {
                    blocks.push(if matches!(e, PollError::Exception(ExceptionCode::ServerDeviceFailure)) {
                        BlockResult::DeviceFailure
                    } else {
                        BlockResult::Lost
                    });
                    error = Some(e);
                }
            }
        }
        if error.is_none() {
            self.backoff = BACKOFF_START;
        }
        let samples = plan.decode(&blocks, ts_ms);
        PollOutcome { ts_ms, blocks, samples, error }
    }

    /// One read request with its deadline. Drops the connection on anything but an exception.
    pub async fn read(
        &mut self,
        slave: u8,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, PollError> {
        self.ensure().await?;
        self.silence().await;
        let Some(Conn::Modbus(ctx)) = self.conn.as_mut() else {
            unreachable!("config validation puts Modbus devices on Modbus buses only")
        };
        ctx.set_slave(Slave(slave));
        let request = async move {
            match table {
                Table::Holding => ctx.read_holding_registers(start, count).await,
                Table::Input => ctx.read_input_registers(start, count).await,
            }
        };
        let result = match timeout(self.bus.timeout, request).await {
            Err(_) => Err(PollError::Timeout(self.bus.timeout)),
            Ok(Err(e)) => Err(PollError::Transport(e.to_string())),
            Ok(Ok(Err(code))) => Err(PollError::Exception(code)),
            Ok(Ok(Ok(regs))) if regs.len() != usize::from(count) => {
                Err(PollError::ShortReply { got: regs.len(), expected: count })
            }
            Ok(Ok(Ok(regs))) => Ok(regs),
        };
        self.quiet_since = Some(Instant::now());
        if let Err(e) = &result
            && e.breaks_connection()
        {
            self.drop_conn();
        }
        result
    }

    /// Keeps the line silent between frames: resolves once the bus's silence has passed since
    /// the last exchange ended (at once when it already has).
    fn silence(&self) -> impl Future<Output = ()> + Send + 'static {
        let until = self.quiet_since.map(|t| t + self.bus.inter_frame);
        async move {
            if let Some(until) = until {
                sleep_until(until).await;
            }
        }
    }
}

async fn open_tcp(address: &str, deadline: Duration) -> Result<Stream, PollError> {
    let endpoint = address.to_string();
    let stream = timeout(deadline, TcpStream::connect(address))
        .await
        .map_err(|_| PollError::ConnectTimeout { endpoint: endpoint.clone(), after: deadline })?
        .map_err(|reason| PollError::Connect { endpoint, reason })?;
    let _ = stream.set_nodelay(true);
    Ok(Box::new(stream))
}

/// Opens a serial port, after `quiet` (if any) to let a late reply arrive and be flushed.
pub(super) async fn open_serial(s: &SerialSettings, quiet: Option<Duration>) -> Result<Stream, PollError> {
    if let Some(q) = quiet {
        sleep(q).await;
    }
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits =
        if s.data_bits == 7 { tokio_serial::DataBits::Seven } else { tokio_serial::DataBits::Eight };
    let stop_bits = if s.stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One };
    let port = tokio_serial::new(&s.path, s.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(|e| PollError::Connect { endpoint: s.path.clone(), reason: e.into() })?;
    // Whatever is queued from before belongs to no request of ours.
    let _ = port.clear(tokio_serial::ClearBuffer::All);
    Ok(Box::new(port))
}
