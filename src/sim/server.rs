//! The simulator's Modbus servers (tokio-modbus server side) over TCP and a serial port.

use std::future::{Ready, ready};
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::Sim;
use crate::acquire::registers::Table;

/// One connection's view of the simulator.
#[derive(Debug, Clone)]
pub struct SimService(pub Arc<Sim>);

impl SimService {
    fn read(
        &self,
        slave: u8,
        table: Table,
        start: u16,
        count: u16,
    ) -> Result<Option<Vec<u16>>, ExceptionCode> {
        read_at(&self.0, slave, table, start, count, self.0.elapsed())
    }
}

/// One read request answered as the simulator would at `at` after its start: `None` when the
/// slave does not answer, an exception for an address it has not.
pub fn read_at(
    sim: &Sim,
    slave: u8,
    table: Table,
    start: u16,
    count: u16,
    at: std::time::Duration,
) -> Result<Option<Vec<u16>>, ExceptionCode> {
    if !sim.answers_at(slave, at) {
        return Ok(None);
    }
    let regs = sim.registers_at(slave, table, at).ok_or(ExceptionCode::IllegalDataAddress)?;
    let range = usize::from(start)..usize::from(start) + usize::from(count);
    if count == 0 || count > 125 {
        return Err(ExceptionCode::IllegalDataValue);
    }
    regs.get(range).map(|r| Some(r.to_vec())).ok_or(ExceptionCode::IllegalDataAddress)
}

impl Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let slave = req.slave;
        ready(match req.request {
            Request::ReadHoldingRegisters(a, n) => {
                self.read(slave, Table::Holding, a, n).map(|r| r.map(Response::ReadHoldingRegisters))
            }
            Request::ReadInputRegisters(a, n) => {
                self.read(slave, Table::Input, a, n).map(|r| r.map(Response::ReadInputRegisters))
            }
            _ if !self.0.answers(slave) => Ok(None),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serves Modbus TCP on `listener` until the task is dropped.
pub async fn serve_tcp(listener: TcpListener, sim: Arc<Sim>) -> io::Result<()> {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, addr| {
        let service = SimService(sim.clone());
        async move {
            tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, move |_| Ok(Some(service.clone())))
        }
    };
    server.serve(&on_connected, |e| tracing::debug!(error = %e, "Simulator connection ended.")).await
}

/// Serves Modbus RTU on a serial device (a pty works) until the task is dropped.
pub async fn serve_rtu(path: &str, baud: u32, sim: Arc<Sim>) -> io::Result<()> {
    let server = tokio_modbus::server::rtu::Server::new_from_path(path, baud)?;
    server.serve_forever(SimService(sim)).await
}
