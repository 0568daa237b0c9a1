"""Output tracking for the Stack (engine/tcp/stack.py): its methods ``mark``,
``output_due`` and ``_to_poll``, kept here so the Stack module stays about IPv4 and
TCP. ``self`` is the Stack.

Without tracking, every poll_transmit asks every active connection for output. With
``stack.output_tracking`` on (the engine's offload poller turns it on), it asks only
the connections marked since its last call: by the Stack itself for a segment in
(unless output would find the connection idle), a timer fired, a connect or a passive
open; by the caller for its user calls (``mark``). The wire carries the same frames
(tests/tcp/test_stack_tracking.py)."""
from __future__ import annotations


def mark(self, conn=None) -> None:
    """With ``output_tracking`` on, a caller tells the Stack which connection a user
    call changed (send, shutdown, close, abort, nodelay, a read opening the window),
    or None for "not said": the next poll_transmit walks every connection.

    The Stack marks by itself every connection it changes: a segment in (unless
    output would find it idle: tcp_output.idle), a timer fired, a connect or a
    passive open. A connection nobody changed since its last walk has nothing new to
    send (output is idempotent: a second call without input builds nothing), so
    poll_transmit polls only the marked ones (in table order), and ``output_due()``
    says whether it has anything to do at all."""
    if conn is None:
        self._due_all = True
        if self.fast is not None:
            self.fast.mark_all()
    elif self.fast is None or not self.fast.mark(conn):
        self._due[conn] = None


def output_due(self) -> bool:
    """Whether poll_transmit could produce a frame now (always, without tracking)."""
    return bool(self._due or self._due_all or self._tx or self._loop or self._deferred
                or not self.output_tracking or (self.fast is not None and self.fast.due))


def to_poll(self) -> list:
    """The connections this round of poll_transmit polls, in the table's order:
    every active one, or with tracking only the marked ones (see mark())."""
    active = self.table.active
    due = self._due
    if due:
        self._due = {}
    if self._due_all or not self.output_tracking:
        self._due_all = False
        return list(active)
    if len(due) < 2:
        return [conn for conn in due if conn in active]
    return active.in_order(due)
