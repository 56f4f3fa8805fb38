"""An independent Modbus analyzer for interop tests, built on pymodbus (not on our code).

    python analyzer.py tcp 127.0.0.1 5020
    python analyzer.py rtutcp 127.0.0.1 5021      # RTU frames over TCP (serial servers, DTUs)
    python analyzer.py rtu /dev/pts/7 9600

Slave 1. Holding registers: 123.456 as float32 in ABCD (0), CDAB (2), BADC (4), DCBA (6);
-1234 as int16 (8); 4000000000 as uint32 ABCD (9); -123456.789 as float64 ABCD (11);
status word 0 (20). Input registers: 20.9 as float32 ABCD (0). The word images are computed
here with struct, independently of the gateway's decoder.
"""
import asyncio
import struct
import sys

from pymodbus import FramerType
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def words(fmt, value):
    raw = struct.pack(fmt, value)
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def f32_orders(value):
    a, b, c, d = struct.pack(">f", value)
    return {
        "ABCD": [a << 8 | b, c << 8 | d],
        "CDAB": [c << 8 | d, a << 8 | b],
        "BADC": [b << 8 | a, d << 8 | c],
        "DCBA": [d << 8 | c, b << 8 | a],
    }


o = f32_orders(123.456)
holding = o["ABCD"] + o["CDAB"] + o["BADC"] + o["DCBA"]
holding += words(">h", -1234) + words(">I", 4000000000) + words(">d", -123456.789)
holding += [0] * (20 - len(holding)) + [0] + [0] * 9
inputs = f32_orders(20.9)["ABCD"] + [0] * 8

device = SimDevice(
    id=1,
    simdata=(
        [SimData(address=0, count=1, values=False, datatype=DataType.BITS)],
        [SimData(address=0, count=1, values=False, datatype=DataType.BITS)],
        [SimData(address=0, values=holding, datatype=DataType.REGISTERS)],
        [SimData(address=0, values=inputs, datatype=DataType.REGISTERS)],
    ),
)


async def main():
    mode = sys.argv[1]
    if mode == "tcp":
        await StartAsyncTcpServer(device, address=(sys.argv[2], int(sys.argv[3])))
    elif mode == "rtutcp":
        await StartAsyncTcpServer(device, framer=FramerType.RTU, address=(sys.argv[2], int(sys.argv[3])))
    else:
        await StartAsyncSerialServer(device, framer=FramerType.RTU, port=sys.argv[2], baudrate=int(sys.argv[3]))


asyncio.run(main())
