"""toad/experiment/counters.py: each mode's source turned into the same keys."""
from __future__ import annotations

from toad.experiment import counters

SNMP = """Ip: Forwarding InHdrErrors
Ip: 1 0
Tcp: RtoAlgorithm RetransSegs InErrs
Tcp: 1 {retrans} {errs}
"""
NETSTAT = """TcpExt: TCPFastRetrans TCPTimeouts TCPSackRecovery TCPOFOQueue
TcpExt: {fast} 2 3 {ofo}
"""


def proc_files(tmp_path, name, **values):
    snmp, netstat = tmp_path / f"{name}-snmp", tmp_path / f"{name}-netstat"
    snmp.write_text(SNMP.format(**values))
    netstat.write_text(NETSTAT.format(**values))
    return counters.read_linux((str(snmp), str(netstat)))


def test_linux_counters_are_what_grew_over_the_run(tmp_path):
    before = proc_files(tmp_path, "a", retrans=10, errs=1, fast=4, ofo=100)
    after = proc_files(tmp_path, "b", retrans=17, errs=1, fast=6, ofo=130)
    out = counters.from_linux(before, after)
    assert out["source"] == "linux"
    assert out["retransmits"] == {"segments": 7, "fast": 2, "timeout": 0}
    assert out["out_of_order_segments"] == 30 and out["bad_frames"] == 0
    # fields this kernel does not publish stay unknown, not zero
    assert out["duplicate_segments"] is None and out["zero_window_stalls"] is None
    assert out["faults"] is None and out["interrupts"] == {"send": None, "recv": None}


def test_inhost_sums_both_stacks_and_crosses_the_wake_ups():
    send = {"tcp.bad_checksum": 2, "ip.rx": 50, "conn.tx_retransmit": 3,
            "conn.tx_fast_retransmit": 4, "conn.fast_retransmit": 1, "nic.wakeups_sent": 9}
    recv = {"ip.bad_checksum": 1, "conn.rx_out_of_order": 5, "conn.rx_duplicate_segment": 2,
            "nic.wakeups_sent": 11}
    out = counters.from_stacks(send, recv)
    assert out["retransmits"] == {"segments": 7, "fast": 1, "timeout": 0}
    assert out["bad_frames"] == 3                   # checksum drops; ip.rx is not one
    assert out["out_of_order_segments"] == 5 and out["duplicate_segments"] == 2
    assert out["interrupts"] == {"send": 11, "recv": 9}


def test_engine_summary_and_qp_rows_by_worker_pid():
    summary = {"wire": {"lost": 3, "duplicated": 1, "reordered": 0, "corrupted": 2},
               "stack": {"tcp.bad_checksum": 2}, "offload": {"rx_window_closed": 4},
               "connections": {"rto": 1, "tx_retransmit": 1}}
    samples = [(0.0, {"qps": [{"host_pid": 7, "interrupts": 1, "bad_records": 0}]}),
               (1.0, {"qps": [{"host_pid": 7, "interrupts": 5, "bad_records": 1},
                              {"host_pid": 8, "interrupts": 2, "bad_records": 0}]})]
    out = counters.from_engine(summary, counters.qp_rows(samples, {"send": 7, "recv": 8}))
    assert out["faults"] == {"loss": 3, "duplicate": 1, "reorder": 0, "corrupt": 2}
    assert out["retransmits"] == {"segments": 1, "fast": 0, "timeout": 1}
    assert out["out_of_buffer_stalls"] == 4 and out["bad_records"] == 1
    assert out["interrupts"] == {"send": 5, "recv": 2}


def test_without_a_summary_every_count_is_unknown():
    out = counters.from_engine(None, {})
    assert out["retransmits"]["segments"] is None and out["faults"] is None


def test_a_tap_engine_has_no_fault_counters():
    out = counters.from_engine({"wire": {}, "stack": {}, "connections": {}}, {})
    assert out["faults"] is None and out["retransmits"]["segments"] == 0
