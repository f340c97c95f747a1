"""Which rank stopped answering: heartbeats from every rank to the chief, and a watchdog.

A rank that is frozen (SIGSTOP, a hung file system, a swapping node), that died without its
launcher stopping the others, or that is cut off leaves the other ranks blocked inside a
collective, where nothing in Python can time them out (MPI has no timeout at all, and the
transports that do have one do not say which rank they waited for). So every rank of a
multi-process engine sends one heartbeat line a second to the chief over a TCP connection, and
the chief answers each with the ranks it has not heard from for `timeout` seconds. A rank that
learns of such a rank, or that hears nothing from the chief for `timeout` seconds, prints one
line naming it and ends its process with EXIT_PEER_LOST: the collective it may be blocked in
cannot be interrupted any other way, and the launcher (or the other ranks' watchdogs) then
stop the rest. The chief listens on loopback when every rank runs on its machine, else on the
address of its host name (`DISTXFER_WORKER_HOST` overrides it).

Busy is not stalled: heartbeats come from a thread, which runs while the rank computes,
writes or waits. Ranks alive but not taking part (one stuck in its own Python code) are left
to the engine's own stall checks (see `distxfer.engines.horovod` and `.multiworker`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from distxfer.errors import EXIT_PEER_LOST
from distxfer.logs import LOGGER

if TYPE_CHECKING:
    from distxfer.engines.base import Engine

log = logging.getLogger(__name__)
BEAT_SECONDS = 1.0
FROZEN_SECONDS = 5.0  # a gap this long between this thread's own ticks: this process was stopped


@dataclass
class _Peer:
    """What the chief knows about one rank."""

    last: float  # time.monotonic() of its last heartbeat (or of the start, before the first)
    where: str = ""  # "pid N on HOST", from its first line


@dataclass
class Board:
    """The chief's table of heartbeats: who was heard from when."""

    size: int
    timeout: float
    started: float = field(default_factory=time.monotonic)
    peers: dict[int, _Peer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.peers = {rank: _Peer(self.started) for rank in range(1, self.size)}

    def heard(self, rank: int, where: str = "") -> None:
        peer = self.peers.get(rank)
        if peer is not None:
            peer.last = time.monotonic()
            peer.where = where or peer.where

    def forgive(self) -> None:
        """Restart every rank's clock (after this process itself was stopped for a while)."""
        now = time.monotonic()
        for peer in self.peers.values():
            peer.last = now

    def silent(self, now: float | None = None) -> list[str]:
        """A description of every rank not heard from for `timeout` seconds."""
        now = time.monotonic() if now is None else now
        return [
            f"rank {rank}{f' ({p.where})' if p.where else ''} has not answered for"
            f" {now - p.last:.0f} s"
            for rank, p in sorted(self.peers.items())
            if now - p.last > self.timeout
        ]


def stop_process(problems: list[str], timeout: float, rank: int) -> None:
    """Say which ranks stopped answering, then end this process (it may be stuck in C++)."""
    message = (
        f"{'; '.join(problems)} (engine.collective_timeout_seconds={timeout:g}); stopping this"
        " rank: run the same command again to resume from the last checkpoint"
    )
    prefix = f"[rank {rank}] " if rank else ""
    print(f"{prefix}distxfer: error: {message}", file=sys.stderr, flush=True)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger(LOGGER).handlers:  # the run's log file, not stderr again
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()
    os._exit(EXIT_PEER_LOST)


class Watchdog:
    """This rank's heartbeat thread (and, on the chief, the listening side)."""

    def __init__(
        self,
        rank: int,
        size: int,
        timeout: float,
        address: tuple[str, int],
        listener: socket.socket | None = None,
        on_silence: Callable[[list[str], float, int], None] = stop_process,
    ) -> None:
        self.rank, self.timeout, self.address = rank, timeout, address
        self.board = Board(size, timeout) if listener is not None else None
        self._listener = listener
        self._on_silence = on_silence
        self._stop = threading.Event()
        target = self._serve if listener is not None else self._beat
        self._thread = threading.Thread(target=target, name="distxfer-liveness", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    # -- the chief -------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._listener is not None and self.board is not None
        board, buffers = self.board, {}
        with selectors.DefaultSelector() as selector:
            self._listener.setblocking(False)
            selector.register(self._listener, selectors.EVENT_READ)
            tick = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() - tick > FROZEN_SECONDS:  # this process was not running
                    board.forgive()
                tick = time.monotonic()
                for key, _ in selector.select(timeout=BEAT_SECONDS):
                    if key.fileobj is self._listener:
                        with contextlib.suppress(OSError):
                            connection, _ = self._listener.accept()
                            connection.setblocking(False)
                            selector.register(connection, selectors.EVENT_READ)
                            buffers[connection] = b""
                        continue
                    self._read(key.fileobj, selector, buffers)
                silent = board.silent()
                if silent and not self._stop.is_set():
                    self._on_silence(silent, self.timeout, self.rank)
                    return
            for connection in buffers:
                connection.close()

    def _read(self, connection, selector, buffers) -> None:  # type: ignore[no-untyped-def]
        """Take a rank's heartbeat lines and answer each with the silent ranks."""
        try:
            data = connection.recv(4096)
        except OSError:
            data = b""
        if not data:  # that rank's process ended; its silence will tell if it matters
            selector.unregister(connection)
            buffers.pop(connection, None)
            connection.close()
            return
        buffered = buffers[connection] + data
        *lines, buffers[connection] = buffered.split(b"\n")
        for line in lines:
            rank, _, where = line.decode("utf-8", "replace").partition(" ")
            if rank.isdigit():
                assert self.board is not None
                self.board.heard(int(rank), where)
                with contextlib.suppress(OSError):
                    connection.sendall(json.dumps(self.board.silent()).encode() + b"\n")

    # -- every other rank --------------------------------------------------------------------
    def _beat(self) -> None:
        answered = time.monotonic()
        hello = f"{self.rank} pid {os.getpid()} on {socket.gethostname()}\n".encode()
        connection, pending = None, b""
        tick = time.monotonic()
        while not self._stop.wait(0 if connection is None else BEAT_SECONDS):
            if time.monotonic() - tick > FROZEN_SECONDS:  # this process was the one not running
                answered = time.monotonic()
            tick = time.monotonic()
            quiet = tick - answered
            if quiet > self.timeout:
                chief = f"rank 0 (the chief) has not answered for {quiet:.0f} s"
                self._on_silence([chief], self.timeout, self.rank)
                return
            try:
                if connection is None:
                    connection = socket.create_connection(self.address, timeout=BEAT_SECONDS)
                connection.sendall(hello)
                received = connection.recv(65536)
            except TimeoutError:  # no answer yet: keep the connection, count the silence
                continue
            except OSError:  # the chief is not there (yet, or any more): try again
                received = b""
            if not received:
                if connection is not None:
                    connection.close()
                connection, pending = None, b""
                time.sleep(BEAT_SECONDS)
                continue
            *answers, pending = (pending + received).split(b"\n")
            if answers:
                answered = time.monotonic()
                silent = json.loads(answers[-1])
                if silent:
                    self._on_silence(silent, self.timeout, self.rank)
                    return
        if connection is not None:
            connection.close()


def start_watchdog(engine: Engine, timeout: float) -> Watchdog:
    """Start this rank's heartbeats (a collective: every rank calls it once, after the engine
    started). The chief's address is agreed through the engine's own broadcast."""
    chief_host = engine.broadcast_object(socket.gethostname() if engine.is_chief else None)
    elsewhere = float(socket.gethostname() != chief_host)
    all_local = engine.all_sum([np.array([elsewhere], np.float64)])[0][0] == 0
    listener = None
    if engine.is_chief:
        host = "127.0.0.1" if all_local else _reachable_host()
        listener = socket.create_server((host, 0))
        address = [host, int(listener.getsockname()[1])]
    address = engine.broadcast_object(address if engine.is_chief else None)
    return Watchdog(engine.rank, engine.size, timeout, (address[0], int(address[1])), listener)


def _reachable_host() -> str:
    """The address other hosts reach this one by: DISTXFER_WORKER_HOST, else the host name's."""
    name = os.environ.get("DISTXFER_WORKER_HOST") or socket.gethostname()
    return socket.gethostbyname(name)
