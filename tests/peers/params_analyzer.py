"""An independent gas analyzer with key parameter registers, for the parameter tests, built on
pymodbus (not on our code).

    python params_analyzer.py 127.0.0.1 5020

Slave 1, holding registers: SO2 700.0 as float32 ABCD (0); status word 0 (20); range
1000.0 (100), slope 1.02 (102), intercept 0.5 (104) as float32 ABCD; calibration time
2026-12-06 15:30:45 as BCD 2026 1206 1530 4500 (110..113); working state 0 (120). The
registers are writable: a test changes the range or the state as a technician would.
"""
import asyncio
import struct
import sys

from pymodbus.server import StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def f32(value):
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]


holding = [0] * 130
holding[0:2] = f32(700.0)
holding[100:102] = f32(1000.0)
holding[102:104] = f32(1.02)
holding[104:106] = f32(0.5)
holding[110:114] = [0x2026, 0x1206, 0x1530, 0x4500]

device = SimDevice(
    id=1,
    simdata=(
        [SimData(address=0, count=1, values=False, datatype=DataType.BITS)],
        [SimData(address=0, count=1, values=False, datatype=DataType.BITS)],
        [SimData(address=0, values=holding, datatype=DataType.REGISTERS)],
        [SimData(address=0, values=[0] * 10, datatype=DataType.REGISTERS)],
    ),
)

asyncio.run(StartAsyncTcpServer(device, address=(sys.argv[1], int(sys.argv[2]))))
