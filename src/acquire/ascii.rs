//! Line-oriented ASCII request/reply for analyzers without Modbus.
//!
//! The gateway writes the configured request, then reads lines until one matches the reply
//! pattern or the deadline passes. Lines that do not match (echoes, banners, garbage) are
//! logged and skipped, so the next good line is still used; input left over from an earlier
//! exchange is discarded before each request.

use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::{Instant, timeout, timeout_at};

use super::link::PollError;
use super::plan::DevicePlan;
use crate::config::PointSource;

/// Longest reply line accepted; longer input is treated as garbage.
pub const MAX_LINE: u64 = 4096;

/// An ASCII connection over any byte stream.
#[derive(Debug)]
pub struct AsciiConn<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsciiConn<S> {
    pub fn new(stream: S) -> Self {
        AsciiConn { stream: BufReader::new(stream) }
    }

    /// Drops whatever input is already waiting.
    async fn discard_stale(&mut self) -> Result<(), PollError> {
        let mut scratch = [0u8; 512];
        let n_buffered = self.stream.buffer().len();
        if n_buffered > 0 {
            std::pin::Pin::new(&mut self.stream).consume(n_buffered);
        }
        loop {
            match timeout(Duration::from_millis(1), self.stream.get_mut().read(&mut scratch)).await {
                Ok(Ok(0)) => return Err(PollError::Transport("connection closed".into())),
                Ok(Ok(n)) => tracing::debug!(n, "Discarded stale input before the request."),
                Ok(Err(e)) => return Err(PollError::Transport(e.to_string())),
                Err(_) => return Ok(()),
            }
        }
    }

    /// Sends `request` and returns the captures of the first matching line, one per point.
    pub async fn exchange(
        &mut self,
        request: &str,
        pattern: &Regex,
        plan: &DevicePlan,
        deadline: Duration,
    ) -> Result<Vec<Option<String>>, PollError> {
        let until = Instant::now() + deadline;
        self.discard_stale().await?;
        let stream = self.stream.get_mut();
        for step in [true, false] {
            let io = if step {
                timeout_at(until, stream.write_all(request.as_bytes())).await
            } else {
                timeout_at(until, stream.flush()).await
            };
            io.map_err(|_| PollError::Timeout(deadline))?.map_err(|e| PollError::Transport(e.to_string()))?;
        }
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = (&mut self.stream).take(MAX_LINE);
            let n = match timeout_at(until, limited.read_until(b'\n', &mut line)).await {
                Err(_) => return Err(PollError::NoMatch(deadline)),
                Ok(Err(e)) => return Err(PollError::Transport(e.to_string())),
                Ok(Ok(0)) => return Err(PollError::Transport("connection closed".into())),
                Ok(Ok(n)) => n,
            };
            let text = String::from_utf8_lossy(&line[..n]);
            let text = text.trim_end_matches(['\r', '\n']);
            if let Some(caps) = pattern.captures(text) {
                return Ok(plan
                    .device
                    .points
                    .iter()
                    .map(|p| match &p.source {
                        PointSource::Capture(name) => caps.name(name).map(|m| m.as_str().to_string()),
                        PointSource::Register(_) | PointSource::Code(_) => None,
                    })
                    .collect());
            }
            tracing::debug!(line = %text.escape_debug(), "Skipped a reply line that does not match the pattern.");
        }
    }
}
