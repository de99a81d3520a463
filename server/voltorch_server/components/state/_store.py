"""Global key/value state with etcd-style revisions, compare-and-set, TTLs, watch, history, snapshots.

Every write runs in one transaction that updates the key's row, appends its history, advances the
global revision and appends a `state.changed` event — so a write, its history and its event are
acknowledged together or not at all. The SQL is the store's (`StatePort`, storage/stores/state.py).
"""

from __future__ import annotations

import builtins
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from ..._ids import new_id
from ...errors import Aborted, Conflict, FieldViolation, InvalidArgument, NotFound, PreconditionViolation
from ...frozen import made
from ...json_encoders import encoder
from ...priority import Priority
from ...storage import GroupCommit, Take, Tx
from ...telemetry import TraceIds, current_trace
from ..events import EventLog, Prepared
from ..shared import (
    Broadcaster,
    Component,
    Follower,
    decode_token,
    encode_token,
    fitting,
    is_count,
    page_size,
    wire_bytes,
)
from ._followed import from_staged
from ._kv_cache import KVCache, Row
from ._store_port import StatePort

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 1 << 20
# Conditions, and operations per branch, of one transaction: the answer echoes every set applied, and one
# that outgrew a gRPC message would reach the caller as a failure after the commit.
MAX_TXN_ITEMS = 1000
# A key's expire_time must stay a valid Timestamp (year <= 9999), or every read of the key fails.
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600
_KEY_RE = re.compile(r"[\x21-\x7e]+")
PUT, DELETE = "PUT", "DELETE"
T = TypeVar("T")


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: Any
    version: int
    create_revision: int
    mod_revision: int
    expire_time: float | None
    update_time: float


@dataclass(frozen=True)
class Change:
    """One change of one key, as Watch and History report it."""

    id: int  # position in the history log (several changes can share a revision)
    revision: int
    type: str  # PUT or DELETE
    kv: KeyValue
    previous: KeyValue | None


@dataclass(frozen=True)
class Condition:
    key: str
    version_equals: int | None = None
    exists: bool | None = None
    value_equals: Any = field(default=None)
    has_value_equals: bool = False


@dataclass(frozen=True)
class SetOp:
    key: str
    value: Any
    expected_version: int | None = None
    ttl: float | None = None


@dataclass(frozen=True)
class DeleteOp:
    key: str
    expected_version: int | None = None


@dataclass(frozen=True)
class TransactionResult:
    succeeded: bool
    revision: int
    failed_conditions: list[int]
    kvs: list[KeyValue]


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    revision: int
    key_count: int
    prefix: str
    description: str
    create_time: float


@dataclass(frozen=True)
class RestoreResult:
    revision: int
    keys_restored: int
    keys_deleted: int


def validate_key(key: str, field_name: str = "key") -> None:
    if len(key) <= MAX_KEY_BYTES and _KEY_RE.fullmatch(key):
        return  # printable ASCII: as many bytes as characters
    if not key:
        raise InvalidArgument(field_name, "a key must not be empty", reason="KEY_INVALID")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(
            field_name,
            f"a key is at most {MAX_KEY_BYTES} bytes (got {len(key.encode())})",
            reason="KEY_INVALID",
        )
    if not _KEY_RE.fullmatch(key):
        raise InvalidArgument(
            field_name, "a key is printable ASCII without spaces or control characters", reason="KEY_INVALID"
        )


def validate_prefix(prefix: str, field_name: str = "prefix") -> None:
    """A prefix is empty (everything) or looks like the start of a key."""
    if not prefix:
        return
    if len(prefix.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(field_name, f"a prefix is at most {MAX_KEY_BYTES} bytes", reason="KEY_INVALID")
    if not _KEY_RE.fullmatch(prefix):
        raise InvalidArgument(
            field_name,
            "a prefix is printable ASCII without spaces or control characters",
            reason="KEY_INVALID",
        )


_to_json = encoder(separators=(",", ":"), allow_nan=False)  # ASCII out (ensure_ascii)
_from_json = json.loads
_json_string = json.encoder.encode_basestring_ascii  # a str as a JSON string literal


def _encode_value(value: Any, field_name: str) -> str:
    try:
        raw = _to_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(field_name, f"value is not JSON: {exc}", reason="VALUE_INVALID") from None
    if len(raw) > MAX_VALUE_BYTES:  # ASCII: characters are bytes
        raise InvalidArgument(
            field_name,
            f"value is {len(raw)} bytes encoded; the limit is {MAX_VALUE_BYTES}",
            reason="VALUE_TOO_LARGE",
        )
    return raw


def _validate_ttl(ttl: float | None, field_name: str) -> None:
    if ttl is not None and ttl < 0:
        raise InvalidArgument(field_name, "ttl must not be negative", reason="DURATION_INVALID")
    if ttl is not None and ttl > MAX_TTL_SECONDS:
        raise InvalidArgument(field_name, "ttl must be at most 100 years", reason="DURATION_INVALID")


def _validate_version(v: int | None, field_name: str) -> None:
    if v is not None and v < 0:
        raise InvalidArgument(field_name, "expected_version must not be negative")


def _key_value(
    key: str,
    value: Any,
    version: int,
    create_revision: int,
    mod_revision: int,
    expire: float | None,
    update: float,
) -> KeyValue:
    """A KeyValue without the frozen dataclass __init__ (one object.__setattr__ per field): every read
    and write makes one or two."""
    kv = made(
        KeyValue,
        key=key,
        value=value,
        version=version,
        create_revision=create_revision,
        mod_revision=mod_revision,
        expire_time=expire,
        update_time=update,
    )
    return kv


def _kv(row: Row) -> KeyValue:
    key, raw, version, create_revision, mod_revision, expire_at, update_time = row
    return _key_value(key, _from_json(raw), version, create_revision, mod_revision, expire_at, update_time)


_CATCH_UP = 1000  # kv_history rows read at once by the follower
# PostgreSQL: seconds without a catch-up reaching the database (the listener's comes every second
# when idle) after which reads stop trusting the cache: a replica cut off from the database
# without noticing serves stale rows for at most this long.
FOLLOWER_SILENCE = 3.0
NOTIFY_CHANNEL = "voltorch_state"  # PostgreSQL: NOTIFYed once per transaction with the newest history id
SWEEP_LEASE = 0x766F6C02  # PostgreSQL advisory lock: the replica that expires TTLs


class _Op(NamedTuple):
    """A write waiting for its batch: what it does, the clock and trace context of its caller."""

    fn: Callable[[_Writer], Any]
    now: float
    trace: TraceIds


class _Batch:
    """The writes of one transaction, staged in memory and put into it with a few statements.

    Writes are computed one after another against the committed rows (cache or database) and the
    batch's earlier writes; each kept write has its own revision, and one that fails is dropped with
    everything it staged, so the others commit without it. `write()` puts the writes kept since its last
    call into the transaction — the revision first, then one statement per table and their
    `state.changed` events — and may run again as more writes join. After commit: the cache and the
    remembered revision first, then each round's events and its watch changes, in revision order.

    The committed revision and the newest kv_history id are remembered in memory (only this class
    writes them, under the writer lock), which saves reading them back, and lets the batch give history
    ids itself so that its rows go in with one statement. The revision is advanced with a compare-and-set:
    if another process wrote the database, what memory holds is stale, and the batch is refused before
    anything else is written (Aborted; the callers retry afresh).

    A batch may also run inside another component's transaction (`StateStore.set_in`: a workflow step's),
    which on SQLite may share its COMMIT with later transactions (`write(group=True)`): its rows are then in
    the database's open transaction, not yet committed, while the next part runs. Memory and the cache hold
    committed rows only, so while a batch's rows are written but their COMMIT (or rollback) not yet seen
    (`StateStore._staged`), the next batch reads the revision, the history head and every row from its
    transaction instead (and fills no cache from it).
    """

    def __init__(self, state: StateStore, tx: Tx):
        self.state = state
        self.tx = tx
        # What memory holds is committed, and nothing of state's is written but uncommitted before this.
        self.trusted = trusted = state._staged is None
        last = state._last_revision if trusted else None
        # PostgreSQL: nothing is remembered (another replica may have written), and reading the revision
        # locks its row until COMMIT, so batches of all replicas take turns and commit in revision order.
        self.committed_revision = last if last is not None else state._revision_in(tx)
        self.revision = self._written_revision = self.committed_revision  # newest kept / put in
        history_id = state._last_history_id if trusted else None
        self.history_id = history_id if history_id is not None else state.store.history_head_in(tx)
        if state._shared and state._delivered < self.history_id:
            # Other replicas committed: the cache takes their changes before writes read it. The
            # revision lock keeps further commits out until this transaction ends.
            state._catch_up()
        self.written: dict[str, Row | None] = {}  # key -> its row after the kept writes (None: deleted)
        self._rows: dict[str, Row | None] = {}  # the same, for what `write()` has not put in yet
        self._history: list[tuple] = []
        self._events: list[Prepared] = []
        self._changes: list[Change] = []
        self.changes: list[Change] = []  # everything kept, in order
        # first (also in a transaction that appended events before): the cache is current before anyone
        # hears of a change
        tx.after_commit(self._committed, first=True)

    def writer(self, now: float, trace: TraceIds) -> _Writer:
        return _Writer(self, now, trace)

    def keep(self, w: _Writer) -> None:
        if not w.changes:
            return
        self.revision = w.revision
        self.history_id += len(w.changes)
        self.written.update(w.written)
        self._rows.update(w.written)
        self._history += w.history
        self._events += w.events
        self._changes += w.changes
        self.changes += w.changes

    def write(self) -> None:
        """Put the writes kept since the last call into the transaction."""
        if not self._history:
            return
        tx = self.tx
        if not self.state.store.advance_revision(tx, self.revision, self._written_revision):
            self.state._forget()
            raise Aborted(
                "the state was changed by another process using the same database; retry",
                reason="CONCURRENT_WRITER",
            )
        self._written_revision = self.revision
        self.state.store.write_rows(tx, self._rows, self._history, self.history_id)
        if not self.state._shared:
            self.state._staged = self  # until its COMMIT is seen (a rollback leaves it: read afresh then)
        self.state.events.append(tx, self._events)  # same transaction: writes and events commit together
        changes = self._changes
        publish: Callable[[list[Change]], None]
        if self.state._shared:
            tx.notify(NOTIFY_CHANNEL, self.history_id)
            rows = from_staged(self._history)
            publish = lambda changes: self.state._catch_up(changes, rows)  # noqa: E731
        else:
            publish = self.state._broadcaster.publish
        tx.after_commit(lambda: publish(changes))  # watchers hear after the events' subscribers
        self._rows, self._history, self._events, self._changes = {}, [], [], []

    def _committed(self) -> None:
        state = self.state
        if state._shared:
            return  # nothing kept in memory (see StateStore.__init__)
        if state._staged is self:
            state._staged = None
        state._last_revision = self.revision
        if self.changes:
            state._last_history_id = self.history_id
            state._cache.apply(list(self.written.items()))


class _Writer:
    """One write of a batch: every change it makes shares one revision, the one after the batch's newest."""

    def __init__(self, batch: _Batch, now: float, trace: TraceIds):
        self.batch = batch
        # Writes are computed one at a time: this one's revision is the batch's next, if it changes anything.
        self.revision = batch.revision + 1
        self.now = now
        self.trace = trace  # the caller's, for its events (the batch may run on another caller's thread)
        self.written: dict[str, Row | None] = {}  # this write's own changes
        self.history: list[tuple] = []
        self.changes: list[Change] = []
        self.events: list[Prepared] = []

    @property
    def latest_revision(self) -> int:
        """The newest revision as this write sees it: its own once it changed something."""
        return self.revision if self.changes else self.revision - 1

    def row(self, key: str) -> Row | None:
        """The key's live row; an expired key is deleted here first (with its DELETE change)."""
        if key in self.written:
            row = self.written[key]
        elif key in self.batch.written:
            row = self.batch.written[key]
        elif not self.batch.trusted:  # perhaps written uncommitted by an earlier batch: as the database says
            row = self.batch.state.store.row_in(self.batch.tx, key)
        else:
            # Not written by this batch, so committed: the cache changes only after commit, under our lock,
            # and the database (seen through this transaction) holds nothing of ours for this key.
            cache = self.batch.state._cache
            row = cache.get(key)
            if row is None:
                row = self.batch.state.store.row_in(self.batch.tx, key)
                if row is not None:
                    cache.fill(row, cache.generation)
        if row is not None and row.expire_at is not None and row.expire_at <= self.now:
            self.delete(row)
            return None
        return row

    def current(self, key: str) -> KeyValue | None:
        """The key's live value (see `row`)."""
        row = self.row(key)
        return _kv(row) if row is not None else None

    def put(self, key: str, raw_value: str, prev: Row | None, expire_at: float | None) -> KeyValue:
        rev = self.revision
        row = Row(
            key, raw_value, prev.version + 1 if prev else 1, prev.create_revision if prev else rev, rev,
            expire_at, self.now,
        )  # fmt: skip
        return self._record(PUT, row, prev)

    def delete(self, prev: Row) -> None:
        self._record(DELETE, prev, prev)

    def _record(self, type_: str, row: Row, prev: Row | None) -> KeyValue:
        rev, now, put = self.revision, self.now, type_ == PUT
        raw: str | None
        key, raw, version, create_revision, _, expire_at, _ = row
        if not put:
            raw = expire_at = None
        history_id = self.batch.history_id + len(self.changes) + 1
        if prev is None:
            self.history.append(
                (history_id, rev, key, type_, raw, version, create_revision, expire_at, now, None, None, None)
            )
            previous = None
        else:
            self.history.append(
                (history_id, rev, key, type_, raw, version, create_revision, expire_at, now)
                + (prev.value, prev.version, prev.mod_revision)
            )
            previous = _kv(prev)
        kv = _key_value(
            key, _from_json(row.value) if put else None, version, create_revision, rev, expire_at, now
        )
        change = made(Change, id=history_id, revision=rev, type=type_, kv=kv, previous=previous)
        self.changes.append(change)
        self.written[key] = row if put else None
        data = (
            f'{{"key":{_json_string(key)},"type":"{"put" if put else "delete"}","version":{version},'
            f'"revision":{rev},"value":{raw if put else "null"}}}'
        )
        self.events.append(
            Prepared("", "state.changed", "state", "", data, "", "", Priority.NORMAL, self.trace)
        )
        return kv


class StateStore(Component):
    name = "state"

    def __init__(
        self,
        store: StatePort,
        events: EventLog,
        *,
        sweep_interval: float = 1.0,
        watch_buffer: int = 1000,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.db = db = store.db  # its transactions (`write()`), followers and leases
        self.clock = clock  # wall clock in seconds; injectable so TTL expiry is testable without waiting
        self.events = events
        self.sweep_interval = sweep_interval
        self.watch_buffer = watch_buffer
        self._broadcaster: Broadcaster[Change] = Broadcaster()
        # PostgreSQL: several replicas write, so the remembered revision is not used; watchers and the
        # committed-row cache hear changes through `_catch_up`, which reads kv_history by position
        # (`_followed` says how the cache stays true, and what reads see), and the TTL sweep runs on the
        # replica holding the lease.
        self._shared = db.kind == "postgres"
        self._cache = KVCache()  # committed rows of hot keys
        self._deliver_lock = threading.Lock()
        # PostgreSQL: the newest kv_history id delivered, and the newest revision applied in full.
        self._delivered = self._applied_revision = 0
        self._heard = 0.0  # monotonic time of the last catch-up that reached the database
        if self._shared:
            self._delivered, self._applied_revision = store.heads()
        self._listener: Any = None
        self._lease: Any = db.try_lock(SWEEP_LEASE) if self._shared else None
        self._last_revision: int | None = None  # the committed revision, once a write has read it
        self._last_history_id: int | None = None  # the newest kv_history id, likewise
        # SQLite: the last batch whose rows were written, until its COMMIT is seen (see _Batch)
        self._staged: _Batch | None = None
        # Concurrent writes share transactions (see storage/_group_commit).
        self._group = GroupCommit(self._run_batch)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._forget()  # a (re)start reads everything afresh from the database
        if self._sweeper and self._sweeper.is_alive():
            return
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="state-ttl-sweeper", daemon=True)
        self._sweeper.start()
        if self._shared and self._listener is None:
            self._listener = self.db.listen([NOTIFY_CHANNEL], lambda head: self._catch_up())

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper:
            self._sweeper.join(timeout=5)
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._lease is not None:
            self._lease.close()
        self._broadcaster.close_all()

    def _catch_up(
        self, mine: list[Change] | None = None, rows: list[tuple[str, Row | None]] | None = None
    ) -> None:
        """PostgreSQL: apply every committed change past the last one delivered to the cache, then offer
        it to this replica's watchers, in history order, read by position. `mine` (with its cache
        `rows`), just committed here, is taken as it is when it is next in line."""
        with self._deliver_lock:
            if mine and rows is not None and mine[0].id == self._delivered + 1:
                self._cache.apply(rows)
                self._applied_revision = mine[-1].revision
                # Delivered before it is offered: a Watch that registers too late to be offered it replays
                # it (upto `_delivered`); one offered it too drops the replayed copy by position.
                self._delivered = mine[-1].id
                self._broadcaster.publish(mine)
                self._heard = time.monotonic()
                return
            while True:
                changes, updates = self.store.followed_after(self._delivered, _CATCH_UP)
                if not changes:
                    self._heard = time.monotonic()
                    return
                self._cache.apply(updates)
                # A revision's rows commit together: all are here, unless the limit cut the last one.
                last = changes[-1].revision
                self._applied_revision = last if len(changes) < _CATCH_UP else last - 1
                self._delivered = changes[-1].id  # before it is offered, as above
                self._broadcaster.publish(changes)

    def check(self) -> None:
        self.store.revision()

    def _forget(self) -> None:
        """Drop what memory holds of the committed state; the next write or read takes it afresh."""
        self._cache.clear()
        self._last_revision = self._last_history_id = None

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_interval):
            if self._lease is not None and not self._lease.held():
                continue  # another replica sweeps
            try:
                self.expire_due()
            except Exception:  # the watcher sees persistent failures through check()
                pass

    def expire_due(self, now: float | None = None) -> int:
        """Delete every key whose TTL has passed (one revision); return how many."""
        now = self.clock() if now is None else now
        due = self.store.expired_keys(now, 1000)
        if not due:
            return 0

        def expire(w: _Writer) -> int:
            for key in due:
                w.row(key)  # deletes it when still expired
            return len(w.changes)

        return self._write(expire, now)

    # -- reads -----------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.store.revision()

    def get(self, key: str) -> KeyValue:
        return _kv(self._live_row(key))

    def get_rendered(self, key: str, render: Callable[[KeyValue], T]) -> T:
        """`render(self.get(key))`, memoized with the cached row: a hot key is decoded and rendered once
        per change, not once per read. The result is shared between callers: treat it as read-only."""
        row = self._live_row(key)
        out = self._cache.derived(row)
        if out is None:
            out = render(self.get(key))
            self._cache.attach(row, out)  # only while `row` is still the key's row (else a no-op)
        return out

    def _live_row(self, key: str) -> Row:
        # PostgreSQL: the cache is current only while the follower hears every commit (see _followed).
        cached = not self._shared or (
            self._listener is not None
            and self._listener.live
            and time.monotonic() - self._heard < FOLLOWER_SILENCE
        )
        row = self._cache.get(key) if cached else None  # only valid keys are ever cached
        if row is None:
            validate_key(key)
            generation = self._cache.generation
            found = self.store.row(key)
            if found is None:
                raise NotFound("key", key)
            row = found
            if not self._shared or row.mod_revision <= self._applied_revision:
                self._cache.fill(row, generation)
        if row.expire_at is not None and row.expire_at <= self.clock():
            raise NotFound("key", key)
        return row

    def list(
        self, prefix: str = "", page_size_: int = 0, page_token: str = ""
    ) -> tuple[list[KeyValue], str, int]:
        validate_prefix(prefix)
        size = page_size(page_size_)
        after = decode_token(page_token, {"prefix": prefix}, shape=lambda p: isinstance(p, str))
        rows, revision = self.store.live_page(prefix, after or "", self.clock(), size + 1)
        kvs = [_kv(r) for r in rows[: fitting(wire_bytes(r.value) for r in rows[:size])]]
        token = encode_token({"prefix": prefix}, kvs[-1].key) if len(rows) > len(kvs) else ""
        return kvs, token, revision

    def history(
        self, key: str, page_size_: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[Change], str]:
        validate_key(key)
        size = page_size(page_size_)
        before = decode_token(page_token, {"key": key}, shape=is_count)
        found = self.store.key_history(key, before if before is not None else 1 << 62, size + 1)
        if not found and before is None:
            raise NotFound("key", key, f"key {key!r} has no history")
        changes = found[: fitting(wire_bytes(_to_json(c.kv.value)) for c in found[:size])]
        token = encode_token({"key": key}, changes[-1].id) if len(found) > len(changes) else ""
        return changes, token

    # -- writes ----------------------------------------------------------------------------------

    def _write(self, fn: Callable[[_Writer], T], now: float, weight: int = 1) -> T:
        """Run fn as one write (one revision) of a group-committed transaction; return what it returns
        once committed. If fn raises, nothing it staged is written and its caller gets the error."""
        return self._group.submit(_Op(fn, now, current_trace()), weight)

    def _run_batch(self, take: Take) -> None:
        # Each sqlite call below lets other threads run: writers arriving meanwhile join this
        # transaction, so the writes are taken only once it is open, and again after each round.
        with self.db.write() as tx:
            b = _Batch(self, tx)
            while ops := take():
                for p in ops:
                    op: _Op = p.op
                    w = b.writer(op.now, op.trace)
                    try:
                        p.result = op.fn(w)
                    except Exception as exc:  # this write alone fails; the others go on
                        p.error = exc
                    else:
                        b.keep(w)
                b.write()

    def set(
        self, key: str, value: Any, *, expected_version: int | None = None, ttl: float | None = None
    ) -> tuple[KeyValue, int]:
        validate_key(key)
        raw = _encode_value(value, "value")
        _validate_version(expected_version, "expected_version")
        _validate_ttl(ttl, "ttl")
        now = self.clock()
        expire_at = now + ttl if ttl else None

        def put(w: _Writer) -> KeyValue:
            prev = w.row(key)
            _check_version(key, prev, expected_version)
            return w.put(key, raw, prev, expire_at)

        kv = self._write(put, now, len(raw))
        return kv, kv.mod_revision

    def set_in(
        self,
        tx: Tx,
        values: Iterable[tuple[str, Any]],
        invalid: Callable[[str, InvalidArgument], None] | None = None,
    ) -> builtins.list[KeyValue]:
        """Set each (key, value) of `values` (no condition, no TTL; a key may come again) inside the
        caller's write transaction on this store's database, as `set` would one after another: each its
        own revision and `state.changed` event, after the events the transaction appended before. They
        commit or roll back with it; the cache, then subscribers, then watchers hear once it has
        committed. On PostgreSQL this locks the revision row until COMMIT: call it after the
        transaction's other row locks. `invalid(key, error)`: a key or value that is not valid (e.g. too
        large) is left out and reported there instead of raising before anything is written."""
        encoded = []
        for key, value in values:
            try:
                validate_key(key)
                encoded.append((key, _encode_value(value, "value")))
            except InvalidArgument as exc:
                if invalid is None:
                    raise
                invalid(key, exc)
        if not encoded:
            return []
        now = self.clock()
        trace = current_trace()
        b = _Batch(self, tx)
        kvs = []
        for key, raw in encoded:
            w = b.writer(now, trace)
            kvs.append(w.put(key, raw, w.row(key), None))
            b.keep(w)
        b.write()
        return kvs

    def delete(self, key: str, *, expected_version: int | None = None) -> tuple[int, KeyValue]:
        validate_key(key)
        _validate_version(expected_version, "expected_version")

        def delete(w: _Writer) -> tuple[int, KeyValue]:
            prev = w.row(key)
            if prev is None:
                if expected_version not in (None, 0):
                    _check_version(key, None, expected_version)
                raise NotFound("key", key)
            _check_version(key, prev, expected_version)
            w.delete(prev)
            return w.revision, _kv(prev)

        return self._write(delete, self.clock())

    def transaction(
        self,
        conditions: Sequence[Condition],
        on_success: Sequence[SetOp | DeleteOp],
        on_failure: Sequence[SetOp | DeleteOp] = (),
    ) -> TransactionResult:
        for name, items in (
            ("conditions", conditions),
            ("on_success", on_success),
            ("on_failure", on_failure),
        ):
            if len(items) > MAX_TXN_ITEMS:
                raise InvalidArgument(name, f"at most {MAX_TXN_ITEMS} per transaction (got {len(items)})")
        for i, c in enumerate(conditions):
            validate_key(c.key, f"conditions[{i}].key")
            if c.version_equals is None and c.exists is None and not c.has_value_equals:
                raise InvalidArgument(
                    f"conditions[{i}]",
                    "a condition needs version_equals, exists or value_equals",
                    reason="FIELD_REQUIRED",
                )
            _validate_version(c.version_equals, f"conditions[{i}].version_equals")
            if c.has_value_equals:
                _encode_value(c.value_equals, f"conditions[{i}].value_equals")
        encoded = {
            "on_success": _validate_ops(on_success, "on_success"),
            "on_failure": _validate_ops(on_failure, "on_failure"),
        }
        now = self.clock()
        n = len(conditions)

        def apply(w: _Writer) -> TransactionResult:
            failed = [i for i, c in enumerate(conditions) if not _holds(c, w.current(c.key))]
            if not failed:
                # An on_success operation's own precondition (its expected_version; a delete needs the
                # key) is one more condition: index n + i when it fails, and on_failure runs instead.
                current = {op.key: w.row(op.key) for op in on_success}
                failed = [n + i for i in _failed_ops(on_success, current)]
            succeeded = not failed
            ops = on_success if succeeded else on_failure
            raws = encoded["on_success" if succeeded else "on_failure"]
            current = {op.key: w.row(op.key) for op in ops}
            if not succeeded:
                blocked = _failed_ops(on_failure, current)
                if blocked:
                    # on_failure's own preconditions failed too: nothing is applied (TTL expiries
                    # noticed while reading are real changes, though). Its operations are numbered
                    # after on_success's.
                    offset = n + len(on_success)
                    return TransactionResult(
                        False, w.latest_revision, failed + [offset + i for i in blocked], []
                    )
            kvs = []
            for op, raw in zip(ops, raws, strict=True):
                prev = current[op.key]
                if isinstance(op, SetOp):
                    assert raw is not None  # _validate_ops encodes every set's value
                    kvs.append(w.put(op.key, raw, prev, now + op.ttl if op.ttl else None))
                elif prev is not None:  # always: a delete of a missing key failed above
                    w.delete(prev)
            return TransactionResult(succeeded, w.latest_revision, failed, kvs)

        weight = sum(len(raw or "") for raws in encoded.values() for raw in raws) + 1
        return self._write(apply, now, weight)

    def _revision_in(self, tx: Tx) -> int:
        """The committed revision; on PostgreSQL its row stays locked until this transaction ends."""
        return self.store.revision_in(tx)

    # -- watch -----------------------------------------------------------------------------------

    def watch(
        self, *, key: str | None = None, prefix: str | None = None, start_revision: int = 0
    ) -> Follower[Change]:
        """Changes of a key or prefix from start_revision (inclusive; 0 = only new ones), then live."""
        if key is not None:
            validate_key(key)
            selects = lambda c: c.kv.key == key  # noqa: E731
        else:
            prefix = prefix or ""
            validate_prefix(prefix)
            n = len(prefix)
            selects = lambda c: c.kv.key[:n] == prefix  # noqa: E731
        if start_revision < 0:
            raise InvalidArgument("start_revision", "must not be negative")
        # Start from a history position even for "only new changes" (0), so a stream that ends before
        # delivering anything still names an exact resume point rather than the start of history.
        after = self.store.watch_start(start_revision)
        # A start revision still in the future excludes whatever commits before it.
        match = lambda c: c.revision >= start_revision and selects(c)  # noqa: E731

        watched = self.store.watched_changes
        prefix_ = prefix or ""

        def replay(after_id: int, limit: int) -> list[Change]:
            # PostgreSQL: only what this replica has delivered (and its cache applied); the rest comes
            # live, so a GetKey after a Watch event on this replica sees the change (see _followed).
            upto = self._delivered if self._shared else 1 << 62
            return watched(after_id, upto, start_revision, key, prefix_, limit)

        return Follower(
            self._broadcaster,
            match=match,
            replay=replay,
            position=lambda c: c.id,
            after=after,
            capacity=self.watch_buffer,
        )

    def revision_at(self, history_id: int) -> int:
        """The revision a watcher should resume at to see history entry `history_id` and after."""
        return self.store.revision_at(history_id)

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, prefix: str = "", description: str = "") -> SnapshotInfo:
        validate_prefix(prefix)
        if len(description) > 1024:
            raise InvalidArgument("description", "at most 1024 characters")
        sid = new_id("snap")
        now = self.clock()
        with self.db.write() as tx:
            revision = self._revision_in(tx)
            count = self.store.snapshot(tx, SnapshotInfo(sid, revision, 0, prefix, description, now), now)
        return SnapshotInfo(sid, revision, count, prefix, description, now)

    def restore(self, snapshot_id: str) -> RestoreResult:
        if not snapshot_id:
            raise InvalidArgument("snapshot_id", "required", reason="FIELD_REQUIRED")
        now = self.clock()
        # Alone in its transaction, not group-committed: it lists the prefix's keys from the database, which
        # would miss keys that writes earlier in the same batch had only staged.
        with self.db.write() as tx:
            snap = self.store.snapshot_in(tx, snapshot_id)
            if snap is None:
                raise NotFound("snapshot", snapshot_id)
            prefix = snap.prefix
            b = _Batch(self, tx)
            w = b.writer(now, current_trace())
            items = self.store.snapshot_items_in(tx, snapshot_id)
            existing = self.store.keys_in(tx, prefix)
            deleted = 0
            for key in existing:
                if key not in items:
                    prev = w.row(key)
                    if prev is not None:
                        w.delete(prev)
                        deleted += 1
            restored = 0
            for key, (raw, expire_at) in items.items():
                if expire_at is not None and expire_at <= now:
                    continue
                w.put(key, raw, w.row(key), expire_at)
                restored += 1
            result = RestoreResult(w.latest_revision, restored, deleted)
            b.keep(w)
            b.write()
            return result

    def list_snapshots(
        self, page_size_: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[SnapshotInfo], str]:
        size = page_size(page_size_)
        before = decode_token(page_token, {}, shape=is_count)
        rows = self.store.snapshots(before if before is not None else 1 << 62, size + 1)
        snaps = [info for info, _ in rows[:size]]
        return snaps, (encode_token({}, rows[size - 1][1]) if len(rows) > size else "")


class _Versioned(Protocol):
    """A stored value's version: a `KeyValue`, or the cache `Row` it is read from."""

    @property
    def version(self) -> int: ...


def _version_of(kv: _Versioned | None) -> int:
    return kv.version if kv else 0


def _check_version(key: str, current: _Versioned | None, expected: int | None) -> None:
    if expected is None or _version_of(current) == expected:
        return
    actual = _version_of(current)
    what = "does not exist" if actual == 0 else f"is at version {actual}"
    raise Conflict(
        f"key {key!r} {what}, not version {expected}",
        violations=[PreconditionViolation("VERSION", key, f"expected version {expected}, current {actual}")],
        metadata={"key": key, "expected_version": str(expected), "current_version": str(actual)},
    )


def _failed_ops(ops: Sequence[SetOp | DeleteOp], current: Mapping[str, _Versioned | None]) -> list[int]:
    """Indexes of operations whose own precondition does not hold against the current values."""
    return [
        i
        for i, op in enumerate(ops)
        if (op.expected_version is not None and _version_of(current[op.key]) != op.expected_version)
        or (isinstance(op, DeleteOp) and current[op.key] is None)
    ]


def _holds(c: Condition, kv: KeyValue | None) -> bool:
    if c.version_equals is not None and _version_of(kv) != c.version_equals:
        return False
    if c.exists is not None and (kv is not None) != c.exists:
        return False
    return not (c.has_value_equals and (kv is None or kv.value != c.value_equals))


def _validate_ops(ops: Sequence[SetOp | DeleteOp], name: str) -> list[str | None]:
    seen: set[str] = set()
    encoded: list[str | None] = []
    problems: list[FieldViolation] = []
    for i, op in enumerate(ops):
        kind = "set" if isinstance(op, SetOp) else "delete"
        validate_key(op.key, f"{name}[{i}].{kind}.key")
        if op.key in seen:
            problems.append(
                FieldViolation(f"{name}[{i}].{kind}.key", f"key {op.key!r} appears twice in one branch")
            )
        seen.add(op.key)
        _validate_version(op.expected_version, f"{name}[{i}].{kind}.expected_version")
        if isinstance(op, SetOp):
            _validate_ttl(op.ttl, f"{name}[{i}].set.ttl")
            encoded.append(_encode_value(op.value, f"{name}[{i}].set.value"))
        else:
            encoded.append(None)
    if problems:
        raise InvalidArgument(problems[0].field, problems[0].description, more=problems[1:])
    return encoded
