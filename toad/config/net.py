"""Config sections of the network side: the NIC backends and the TCP/IP stack."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal, Optional

from .loader import ConfigError, doc


def check_interface(path: str, text: str) -> None:
    try:
        if "/" not in text:
            raise ValueError(text)
        ipaddress.IPv4Interface(text)
    except ValueError:
        raise ConfigError(f"{path}: {text!r} is not an IPv4 address with prefix, e.g. 10.77.0.2/24") from None


def check_address(path: str, text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{path}: {text!r} is not an IPv4 address, e.g. 10.77.0.1") from None


def check_rate(path: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{path}: {value} must be a probability in [0, 1)")


@dataclass(frozen=True)
class WireConfig:
    """The engine's in-process loopback wire (bandwidth, delay), and the faults every
    toad NIC injects: the loopback wire in its cable, the others through
    engine/nic/faults.py (each frame sent on the in-host shared-memory wire, and
    both directions on TAP)."""
    bandwidth_gbps: Optional[float] = doc("bandwidth cap in Gb/s (null = none; the "
                                          "engine's loopback wire only)", default=None)
    delay_us: float = doc("one-way propagation delay (the engine's loopback wire only)",
                          default=0.0)
    loss: float = doc("probability a frame is dropped (every toad NIC: loopback, "
                      "shared-memory wire, TAP)", default=0.0)
    duplicate: float = doc("probability a frame is delivered twice", default=0.0)
    reorder: float = doc("probability a frame is held back behind the next one", default=0.0)
    corrupt: float = doc("probability one byte of a frame is flipped", default=0.0)
    seed: int = doc("random seed of the fault injection", default=1)

    def validate(self, path: str) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            check_rate(f"{path}.{name}", getattr(self, name))
        if self.bandwidth_gbps is not None and self.bandwidth_gbps <= 0:
            raise ConfigError(f"{path}.bandwidth_gbps: {self.bandwidth_gbps} must be > 0 or null")
        if self.delay_us < 0:
            raise ConfigError(f"{path}.delay_us: {self.delay_us} must be >= 0")


@dataclass(frozen=True)
class TapConfig:
    netns: str = doc("network namespace of the Linux side; created and removed by toad "
                     "if absent", default="toad-peer")
    device: str = doc("name of the TAP device", default="toad0")
    address: str = doc("toad's address on the TAP link", default="10.77.0.2/24")
    peer_address: str = doc("the Linux side's address (inside netns)", default="10.77.0.1")
    mtu: int = doc("MTU of the TAP link", default=1500)
    offloads: tuple[Literal["csum", "tso"], ...] = doc(
        "NIC features through the virtio-net header: csum (checksum offload), "
        "tso (64 KB TSO/GSO segments both ways)", default=("csum", "tso"))

    def validate(self, path: str) -> None:
        check_interface(f"{path}.address", self.address)
        check_address(f"{path}.peer_address", self.peer_address)
        if not 576 <= self.mtu <= 65521:
            raise ConfigError(f"{path}.mtu: {self.mtu} must be 576..65521")
        if not self.netns or "/" in self.netns:
            raise ConfigError(f"{path}.netns: {self.netns!r} is not a valid namespace name")
        if not 1 <= len(self.device) <= 15:
            raise ConfigError(f"{path}.device: {self.device!r} must be 1..15 characters")


@dataclass(frozen=True)
class NicConfig:
    kind: Literal["loopback", "tap"] = doc(
        "loopback: internal wire (engine) or shared-memory wire (in-host); "
        "tap: a TAP device to the Linux kernel in a namespace", default="loopback")
    mtu: int = doc("MTU of the loopback / shared-memory wire (up to 65535)", default=65535)
    address: str = doc("toad's address on the loopback wire", default="10.0.0.1/24")
    peer_address: str = doc(
        "the second host's address on the shared-memory wire (in-host mode)", default="10.0.0.2")
    wire: WireConfig = doc("loopback wire: bandwidth, delay; faults on every NIC",
                           default_factory=WireConfig)
    tap: TapConfig = doc("TAP device settings", default_factory=TapConfig)
    pcap: Optional[str] = doc("file to capture the frames of toad's NIC in (pcap, each frame "
                              "once; in-host mode also FILE-b for the sending host), null = off",
                              default=None)
    arp_timeout_s: float = doc("seconds an ARP entry is trusted before it is re-asked "
                               "(the engine's stack in offload mode, each worker's in inhost mode)",
                               default=60.0)

    def validate(self, path: str) -> None:
        if not 576 <= self.mtu <= 65535:
            raise ConfigError(f"{path}.mtu: {self.mtu} must be 576..65535")
        if self.arp_timeout_s <= 0:
            raise ConfigError(f"{path}.arp_timeout_s: {self.arp_timeout_s} must be > 0")
        check_interface(f"{path}.address", self.address)
        check_address(f"{path}.peer_address", self.peer_address)


@dataclass(frozen=True)
class TcpConfig:
    checksum: Literal["software", "integrated", "offloaded", "off"] = doc(
        "software: RFC 1071 pass; integrated: one pass that copies and sums; "
        "offloaded: left to the NIC (software when the NIC cannot); off: TCP checksum "
        "neither computed nor checked (experiments only)", default="offloaded")
    cc: Literal["reno", "newreno"] = doc("congestion control by name", default="newreno")
    window_scale: bool = doc("RFC 7323 window scaling", default=True)
    timestamps: bool = doc("RFC 7323 timestamps and PAWS", default=True)
    sack: bool = doc("RFC 2018 selective acknowledgements", default=True)
    delayed_ack_ms: float = doc("delayed-ACK timer; 0 = ACK every segment", default=40.0)
    nagle: bool = doc("Nagle's algorithm (sockets can still set no-delay)", default=True)
    header_prediction: bool = doc("BSD header prediction fast path", default=True)
    fast_path: Literal["compiled", "python"] = doc(
        "compiled: the engine/fast kernels take the common segments of ordinary "
        "connections (in-order ACKs and data, the data and ACKs they send); python: "
        "the Python stack takes all",
        default="python")
    fast_path_flows: int = doc("connections the compiled fast path's table holds",
                               default=16384)
    send_buffer_bytes: int = doc("stack send buffer per connection (in-host)", default=4 << 20)
    recv_buffer_bytes: int = doc("receive window / buffer per connection", default=4 << 20)
    rto_initial_ms: float = doc("initial retransmission timeout (RFC 6298: 1 s)", default=1000.0)
    rto_min_ms: float = doc("lower bound of the RTO", default=200.0)
    rto_max_ms: float = doc("upper bound of the RTO", default=60000.0)
    syn_retries: int = doc("SYN retransmissions before connect fails (ETIMEDOUT)", default=5)
    max_retries: int = doc("data retransmissions before the connection is dropped", default=12)
    time_wait_s: float = doc("TIME-WAIT duration (2 MSL)", default=60.0)
    keepalive_s: Optional[float] = doc("idle time before keepalive probes; null = off", default=None)
    keepalive_interval_s: float = doc("time between unanswered keepalive probes", default=75.0)
    keepalive_probes: int = doc("unanswered keepalive probes before the connection "
                                "times out (ETIMEDOUT)", default=9)
    listen_backlog: int = doc("default listen backlog", default=128)
    syn_cookies: bool = doc(
        "RFC 4987 SYN cookies, as Linux makes them: a SYN that finds a listener's backlog "
        "full of half-open connections is answered with a stateless SYN-ACK, and the ACK "
        "of it makes the connection (false: such a SYN is dropped)", default=True)
    challenge_ack_per_s: int = doc("RFC 5961 challenge ACKs a connection sends per second "
                                   "at most (answers to suspicious RST/SYN/old ACKs)",
                                   default=1000)

    def validate(self, path: str) -> None:
        for name in ("delayed_ack_ms", "rto_initial_ms", "rto_min_ms", "time_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{path}.{name}: {getattr(self, name)} must be >= 0")
        if self.rto_min_ms > self.rto_max_ms:
            raise ConfigError(f"{path}.rto_min_ms: {self.rto_min_ms} must be <= rto_max_ms")
        for name in ("send_buffer_bytes", "recv_buffer_bytes"):
            if not 4096 <= getattr(self, name) <= 1 << 30:
                raise ConfigError(f"{path}.{name}: {getattr(self, name)} must be 4096..1073741824")
        if self.keepalive_s is not None and self.keepalive_s <= 0:
            raise ConfigError(f"{path}.keepalive_s: {self.keepalive_s} must be > 0 or null (off)")
        if self.keepalive_interval_s <= 0:
            raise ConfigError(f"{path}.keepalive_interval_s: {self.keepalive_interval_s} must be > 0")
        for name in ("keepalive_probes", "syn_retries", "max_retries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{path}.{name}: {getattr(self, name)} must be >= 0")
        if not 1 <= self.fast_path_flows <= 1 << 22:
            raise ConfigError(f"{path}.fast_path_flows: {self.fast_path_flows} must be 1..4194304")
        if self.challenge_ack_per_s < 1:
            raise ConfigError(f"{path}.challenge_ack_per_s: {self.challenge_ack_per_s} must be >= 1")
