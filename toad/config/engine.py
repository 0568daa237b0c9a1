"""Config sections of the engine, the host queue pairs and interrupts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from .loader import ConfigError, doc


def available_cpus() -> list[int]:
    """CPUs this process may run on (its affinity mask)."""
    return sorted(os.sched_getaffinity(0))


def check_cpu(path: str, cpu: int) -> None:
    cpus = available_cpus()
    if cpu not in cpus:
        raise ConfigError(f"{path}: {cpu} is not an available CPU "
                          f"(available: {', '.join(map(str, cpus))})")


def check_power_of_two(path: str, value: int, low: int, high: int) -> None:
    if value < low or value > high or value & (value - 1):
        raise ConfigError(f"{path}: {value} must be a power of two between {low} and {high}")


@dataclass(frozen=True)
class EngineConfig:
    cpu: int = doc("CPU the engine process is pinned to (it owns this CPU)", default=1)
    polling: Literal["busy", "adaptive"] = doc(
        "busy: spin forever; adaptive: sleep on the wake semaphore after idle_us "
        "without work (io_uring SQPOLL style 'sleeping' flag)", default="adaptive")
    idle_us: int = doc("adaptive polling: idle time before the engine sleeps", default=2000)
    max_qps: int = doc("queue-pair slots in the register file", default=16)
    heartbeat_timeout_ms: int = doc(
        "a host declares the engine dead when the heartbeat stalls this long", default=1000)
    sleep_slice_ms: int = doc(
        "adaptive polling: longest single sleep; the heartbeat advances at least this "
        "often while the engine sleeps", default=10)
    host_check_ms: int = doc(
        "how often the engine checks that each QP's host process is alive", default=5)
    staging_bytes: int = doc(
        "engine memory per QP for received data that finds no free anonymous buffer "
        "(a card's on-board memory): it is acknowledged, kept, and placed into buffers "
        "in arrival order as the host returns them; past this a segment is refused and "
        "resent by the peer (rx_out_of_buffers); 0 = refuse at once", default=64 << 20)

    def validate(self, path: str) -> None:
        check_cpu(f"{path}.cpu", self.cpu)
        if not 1 <= self.max_qps <= 256:
            raise ConfigError(f"{path}.max_qps: {self.max_qps} must be between 1 and 256")
        if self.idle_us < 0:
            raise ConfigError(f"{path}.idle_us: {self.idle_us} must be >= 0")
        if self.heartbeat_timeout_ms < 50:
            raise ConfigError(f"{path}.heartbeat_timeout_ms: {self.heartbeat_timeout_ms} must be >= 50")
        if not 1 <= self.sleep_slice_ms <= self.heartbeat_timeout_ms // 2:
            raise ConfigError(f"{path}.sleep_slice_ms: {self.sleep_slice_ms} must be between 1 "
                              f"and heartbeat_timeout_ms / 2 ({self.heartbeat_timeout_ms // 2})")
        if not 1 <= self.host_check_ms <= 1000:
            raise ConfigError(f"{path}.host_check_ms: {self.host_check_ms} must be 1..1000")
        if not 0 <= self.staging_bytes <= 1 << 34:
            raise ConfigError(f"{path}.staging_bytes: {self.staging_bytes} must be "
                              f"0..17179869184")


@dataclass(frozen=True)
class QueuePairConfig:
    request_entries: int = doc("request ring size (records, power of two)", default=1024)
    event_entries: int = doc("event ring size (records, power of two)", default=4096)
    recv_buffers: int = doc("anonymous receive buffers in the pool", default=64)
    recv_pool_bytes: int = doc(
        "when > 0, the pool holds recv_pool_bytes / recv_buffer_bytes buffers (at "
        "least 8) in place of recv_buffers: an experiment's pool then has the same size "
        "in bytes at every chunk size (a pool bigger than the caches makes every copy "
        "out of it slower); 0 = recv_buffers as given", default=0)
    recv_buffer_bytes: int = doc(
        "size of one anonymous receive buffer (the 'chunk'); experiments set it "
        "to the workload's chunk size", default=131072)
    recv_small_buffers: int = doc(
        "small anonymous receive buffers beside the chunk-sized ones (a second "
        "buffer group, as io_uring's): the engine puts a pushed segment that fits one "
        "and finds no partly filled buffer of its connection there, so a 64 B message "
        "spends 2 KB of the pool, not a chunk; 0 = chunk-sized buffers only (TOAD's), "
        "as when recv_small_bytes is not below recv_buffer_bytes", default=4096)
    recv_small_bytes: int = doc("size of one small anonymous receive buffer", default=2048)
    send_buffer_bytes: int = doc(
        "host send ('kernel') buffer area per QP, in bytes", default=4 * 1024 * 1024)
    send_share_bytes: int = doc(
        "send-buffer bytes one connection may hold before its writer sleeps", default=1024 * 1024)
    send_space_threshold: int = doc(
        "a sleeping writer asks to be woken when this many bytes are freed (at most half "
        "its ring, so it refills while the rest drains)", default=131072)
    max_connections: int = doc(
        "rows in the per-QP cumulative counter table: the sockets one host process may "
        "have at once (listeners and connections whose CLOSE the engine has not "
        "answered yet included; one row is never used); past it socket() fails with "
        "EMFILE. Raise it for more (up to 1048576; a row costs 32 B of the QP's "
        "segment and ~100 B of the host driver's tables)", default=1024)
    busy_poll_us: int = doc(
        "host driver: spin this long waiting for an event before sleeping on the "
        "QP's interrupt semaphore", default=50)
    busy_poll_mode: Literal["adaptive", "yield"] = doc(
        "host driver wait policy. adaptive (bulk): spin at most busy_poll_us, less "
        "while spins end in a sleep anyway, and never when a spin costs more CPU than "
        "the sleep it saves; yield (latency, like Linux SO_BUSY_POLL): always spin "
        "busy_poll_us, calling sched_yield between polls so a peer on the same CPU "
        "runs, then sleep", default="adaptive")
    rx_batch_max: int = doc(
        "host driver: a receive-only waiter (its socket has read before and sent "
        "nothing since its last read) asks for its interrupt after up to this many "
        "events, doubling while they come fast (1 = wake at every event; at most "
        "recv_buffers / 4 are used)", default=16)
    rx_batch_us: int = doc(
        "host driver: longest a batched receive wait sleeps before it takes the events "
        "that came (bounds the delay batching adds to a slow stream)", default=4000)
    recv_post_push: bool = doc(
        "offload receive: post a partly filled anonymous buffer to the host when the "
        "peer's segment carries PSH (a full buffer is always posted)", default=True)
    recv_post_delay_us: int = doc(
        "offload receive: post a partly filled anonymous buffer once its first byte "
        "has waited this long (0 = never; push false and delay 0 is TOAD's "
        "'only when full')", default=200)
    close_linger_s: float = doc(
        "offload host: at exit, how long the host waits for closed connections to "
        "get their sent data acknowledged before it detaches its QP (the engine then "
        "copies what is left out of the host's memory and still delivers it)",
        default=10.0)

    def validate(self, path: str) -> None:
        check_power_of_two(f"{path}.request_entries", self.request_entries, 8, 1 << 20)
        check_power_of_two(f"{path}.event_entries", self.event_entries, 8, 1 << 20)
        if not 1 <= self.recv_buffers <= 65536:
            raise ConfigError(f"{path}.recv_buffers: {self.recv_buffers} must be 1..65536")
        if not 512 <= self.recv_buffer_bytes <= 16 << 20:
            raise ConfigError(
                f"{path}.recv_buffer_bytes: {self.recv_buffer_bytes} must be 512..16777216")
        if not 0 <= self.recv_small_buffers <= 65536:
            raise ConfigError(f"{path}.recv_small_buffers: {self.recv_small_buffers} must "
                              f"be 0..65536")
        if not 256 <= self.recv_small_bytes <= 1 << 20 or self.recv_small_bytes % 64:
            raise ConfigError(f"{path}.recv_small_bytes: {self.recv_small_bytes} must be a "
                              f"multiple of 64 in 256..1048576")
        if not 0 <= self.recv_pool_bytes <= 1 << 30:
            raise ConfigError(f"{path}.recv_pool_bytes: {self.recv_pool_bytes} must be "
                              f"0..1073741824")
        if self.recv_pool_bytes:
            # derived, not chosen: the count follows the pool and the buffer size
            count = min(65536, max(8, self.recv_pool_bytes // self.recv_buffer_bytes))
            object.__setattr__(self, "recv_buffers", count)
        if self.send_buffer_bytes < 65536:
            raise ConfigError(f"{path}.send_buffer_bytes: {self.send_buffer_bytes} must be >= 65536")
        if not 0 < self.send_share_bytes <= self.send_buffer_bytes:
            raise ConfigError(f"{path}.send_share_bytes: {self.send_share_bytes} must be "
                              f"between 1 and send_buffer_bytes ({self.send_buffer_bytes})")
        if not 0 < self.send_space_threshold <= self.send_share_bytes:
            raise ConfigError(f"{path}.send_space_threshold: {self.send_space_threshold} must be "
                              f"between 1 and send_share_bytes ({self.send_share_bytes})")
        if not 1 <= self.max_connections <= 1 << 20:
            raise ConfigError(f"{path}.max_connections: {self.max_connections} must be 1..1048576")
        if self.busy_poll_us < 0:
            raise ConfigError(f"{path}.busy_poll_us: {self.busy_poll_us} must be >= 0")
        if not 1 <= self.rx_batch_max <= 65536:
            raise ConfigError(f"{path}.rx_batch_max: {self.rx_batch_max} must be 1..65536")
        if not 50 <= self.rx_batch_us <= 1_000_000:
            raise ConfigError(f"{path}.rx_batch_us: {self.rx_batch_us} must be 50..1000000")
        if not 0 <= self.recv_post_delay_us <= 10_000_000:
            raise ConfigError(f"{path}.recv_post_delay_us: {self.recv_post_delay_us} must be "
                              f"0..10000000")
        if self.close_linger_s < 0:
            raise ConfigError(f"{path}.close_linger_s: {self.close_linger_s} must be >= 0")


@dataclass(frozen=True)
class InterruptConfig:
    moderation_events: int = doc(
        "raise at most one interrupt per this many events (1 = no moderation); an "
        "armed interrupt fires when this many events are pending...", default=1)
    moderation_us: int = doc(
        "...or when the oldest pending event has waited this many microseconds "
        "(0 = no time limit; required > 0 when moderation_events > 1)", default=0)

    def validate(self, path: str) -> None:
        if self.moderation_events < 1:
            raise ConfigError(f"{path}.moderation_events: {self.moderation_events} must be >= 1")
        if self.moderation_us < 0:
            raise ConfigError(f"{path}.moderation_us: {self.moderation_us} must be >= 0")
        if self.moderation_events > 1 and self.moderation_us == 0:
            raise ConfigError(f"{path}.moderation_us: 0 with moderation_events "
                              f"{self.moderation_events} could hold a lone event's interrupt "
                              f"forever; set moderation_us > 0 to bound the delay")
