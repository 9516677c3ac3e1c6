"""HTTP performance: phone lookup and customer search through ``provisioner serve`` on loopback.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_http.py                        # both, 1,000,000 contacts
    .venv/bin/python bench/bench_http.py --contacts 50000 --duration 5 --no-write
    .venv/bin/python bench/bench_http.py --prepare /data/http50k --contacts 50000
    .venv/bin/python bench/bench_http.py --reuse /data/http50k --db sqlite --kinds bare lookup

Setup (timed, not judged): a fresh database with a small tenant, the bench
tenant with N contacts (``seed.seed_contacts``: realistic names, kana, phones)
and another small tenant after it; an admin with a password logs in through
the API for a bearer token. ``--prepare DIR`` builds that once into ``DIR``
(``bench.db``, ``master_key.b64``, ``inputs.json``) and stops; ``--reuse DIR``
runs against such a directory instead of building: SQLite works on a copy of
``bench.db`` (the run writes login sessions), PostgreSQL on a fresh database
loaded from it table by table (``COPY``).

Load: the real server (``provisioner serve --workers N`` in its own processes)
on the same 2-core machine as the load generator, which takes its share of the
CPU. Two kinds of run per request type and worker count:

* **saturation** (closed loop): ``wrk`` (one thread, ``--connections``
  keep-alive connections, ``--duration`` seconds): the most requests/s the
  server answers. Its latencies are mostly queueing (p50 ~= connections /
  throughput).
* **offered rate** (open loop): requests sent on a fixed schedule of
  ``--rate`` per second (``--duration`` seconds) over up to 64 keep-alive
  connections by an asyncio client in this process, each latency measured
  from the request's *scheduled* send time to its response's last byte, so a
  slow server is not hidden by the client waiting for it (no coordinated
  omission: a request that waited for a free connection is late by that wait).

Requests:

* **lookup**: ``GET /api/tenants/bench/lookup?phone=...`` over 2,000 real numbers
  of the tenant written in varied formats (03-1234-5678, +81 3 1234 5678,
  full-width digits): every response must be 200.
* **search**: ``GET /api/tenants/bench/search?q=...`` (first page of 50 and the
  exact total) over 1..4-character terms drawn from the data (surnames, kana,
  phone digits): every response must be 200.
* **update**: ``PATCH /api/tenants/bench/records/contact/{id}`` setting one field
  (``note``) to a value new on every request, over 2,000 contacts spread over the
  tenant.
* **bare**: ``GET /api/tenants/bench/bench-bare``, the benchmark route the server
  has with ``PROVISIONER_BENCH_ROUTES=1`` (set for the servers started here, off by
  default): the same middleware, routing and parameters, no session check, no
  database; it answers the bytes of one lookup's answer (taken in-process first),
  held in memory. The base of the *ratio to bare*.

Each type runs at saturation, then open-loop at half the rate its saturation run
answered (the lookup also at ``--rate``). In-process, the lookup's database work
is timed against ``SELECT 1`` on the same pool (median and p99, one call at a time).

Targets: lookup p99 <= 10 ms at >= 1,000 requests/s (issue: HTTP service); issue
16: each type's server CPU per request at most 2x the bare route's, p99 at half
its saturation rate at most 10 ms; on PostgreSQL the lookup's in-process median
at most 4x the pooled ``SELECT 1``'s and its p99 at most 2 ms. The section "## HTTP"
of ``docs/performance.md`` is written (replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

from bench import bench_core  # noqa: E402
from bench.bench_core import machine  # noqa: E402
from provisioner.clock import SystemClock  # noqa: E402
from provisioner.db import migrate  # noqa: E402
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, tenants  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.crm import seed  # noqa: E402
from provisioner.services.provisioning import auth  # noqa: E402
from provisioner.web.app import BENCH_BARE_PATH  # noqa: E402

SECTION_TITLE = "## HTTP"
PASSWORD = "bench password 1"
FULL = str.maketrans("0123456789", "０１２３４５６７８９")
PG_BENCH_DB = "provisioner_bench_http"
TARGET_RPS = 1000
TARGET_P99_MS = 10.0
#: issue 16: server CPU per request at most this many times the bare route's ...
TARGET_CPU_RATIO = 2.0
#: ... and p99 at half the saturation rate at most TARGET_P99_MS
#: in-process on PostgreSQL: the lookup's median at most this many times SELECT 1's ...
TARGET_PG_MEDIAN_RATIO = 4.0
#: ... and its p99 at most this (ms)
TARGET_PG_P99_MS = 2.0
#: the contact field the update requests set (PATCH .../records/contact/{id})
UPDATE_FIELD = "note"
UPDATE_BODY = b'{"note": "bench update %d"}'
#: rows of the in-process latency table
LAT_RAW = "SELECT 1: one round trip on a held connection (autocommit)"
LAT_SELECT = "SELECT 1 through the pool (checkout, BEGIN, SELECT 1, ROLLBACK, return)"
LAT_LOOKUP = "lookup service call (read-only transaction, session check, search.lookup)"
#: the request types, in the order run
KINDS = ("bare", "lookup", "search", "update")
#: keep-alive connections of the open-loop client (the most requests in flight)
OPEN_LOOP_CONNECTIONS = 64
#: how long the open-loop client waits for answers after the last scheduled send
DRAIN_SECONDS = 30


@dataclass
class Run:
    db: str
    scenario: str
    workers: int
    mode: str  # "saturation" (wrk, closed loop) or "offered N/s" (open loop)
    requests: int
    rps: float
    p50: float
    p90: float
    p99: float
    bad: int
    #: CPU seconds of the server's processes (and, on PostgreSQL, of the database
    #: server) per request answered, in ms
    cpu_ms: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- data


def seed_data(url: str, contacts: int, log: Callable[[str], None]) -> None:
    """The three tenants, their admins (with the bench password) and their contacts."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    master = MasterKey(base64.b64decode(os.environ["PROVISIONER_MASTER_KEY"]))
    app = Provisioner(engine, master_key=master, clock=SystemClock())
    for slug, n in (("small-1", 2000), ("bench", contacts), ("small-2", 2000)):
        with app.transaction() as ctx:
            tenants.create(ctx, slug, name=f"{slug} 株式会社")
            tenants.add_user(ctx, f"{slug}-admin", tenant_slug=slug, role="admin")
            auth.set_initial_password(ctx, f"{slug}-admin", PASSWORD, by="bench")
        started = time.perf_counter()
        with app.transaction() as ctx:
            seed.seed_contacts(ctx, actors.resolve(ctx, f"{slug}-admin", slug), n, seed=len(slug))
        log(f"seeded {n:,} contacts in {slug} in {time.perf_counter() - started:.1f} s")
    engine.dispose()


def sample_inputs(url: str) -> tuple[list[str], list[str]]:
    """2,000 phone numbers of the bench tenant in varied spellings, and search terms."""
    from sqlalchemy import text

    engine = make_engine(url)
    with engine.connect() as conn:
        tid = conn.execute(text("SELECT id FROM tenants WHERE slug = 'bench'")).scalar_one()
        if engine.dialect.name == "postgresql":
            conn.execute(
                text("SELECT set_config('provisioner.tenant_id', :t, false)"), {"t": str(tid)}
            )
        contacts = conn.execute(
            text("SELECT count(*) FROM crm_contacts WHERE tenant_id = :t"), {"t": tid}
        ).scalar_one()
        step = max(1, contacts // 2000)
        rows = conn.execute(
            text(
                "SELECT phone, name, kana FROM crm_contacts WHERE tenant_id = :t AND phone <> '' "
                "AND id % :s = 0 ORDER BY id LIMIT 2000"
            ),
            {"t": tid, "s": step},
        ).all()
    engine.dispose()
    rng = random.Random(7)
    phones = []
    for phone, _, _ in rows:
        digits = re.sub(r"\D", "", phone)
        spelled = rng.choice([phone, digits, "+81 " + digits[1:], phone.translate(FULL)])
        phones.append(spelled)
    terms = []
    for _, name, kana in rows[:500]:
        surname = name.split()[0] if name.split() else name
        pick = rng.choice(
            [surname[:1], surname[:2], kana.replace(" ", "")[:3], name.replace(" ", "")[:4]]
        )
        terms.append(pick)
    terms += [re.sub(r"\D", "", p)[-4:] for p, _, _ in rows[:100]]
    return phones, [t for t in terms if t]


def build(url: str, contacts: int, log: Callable[[str], None]) -> tuple[list[str], list[str]]:
    seed_data(url, contacts, log)
    return sample_inputs(url)


def prepare(directory: Path, contacts: int, log: Callable[[str], None]) -> None:
    """Build the SQLite data once into ``directory`` for later ``--reuse`` runs."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "bench.db").exists():
        raise SystemExit(f"{directory / 'bench.db'} exists already")
    key = base64.b64encode(os.urandom(32)).decode()
    (directory / "master_key.b64").write_text(key)
    os.environ["PROVISIONER_MASTER_KEY"] = key
    url = f"sqlite:///{directory}/bench.db"
    started = time.perf_counter()
    phones, terms = build(url, contacts, log)
    (directory / "inputs.json").write_text(
        json.dumps({"phones": phones, "terms": terms}, ensure_ascii=False)
    )
    log(f"prepared {directory} in {time.perf_counter() - started:.0f} s")


def copy_sqlite_to_postgres(sqlite_path: Path, pg_url: str, log: Callable[[str], None]) -> None:
    """Load a prepared SQLite database into a freshly migrated PostgreSQL one (COPY)."""
    import sqlite3

    from sqlalchemy import Boolean, MetaData, text

    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    meta = MetaData()
    meta.reflect(engine)
    tables = [t for t in meta.sorted_tables if t.name != "alembic_version"]
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET timezone = 'UTC'")
        cur.execute("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " CASCADE")
        for table in tables:
            started = time.perf_counter()
            names = [c.name for c in table.columns]
            bools = [isinstance(c.type, Boolean) for c in table.columns]
            have = {r[1] for r in source.execute(f'PRAGMA table_info("{table.name}")')}
            if set(names) - have:
                raise SystemExit(f"{table.name}: columns {set(names) - have} missing in SQLite")
            rows = source.execute(
                f'SELECT {", ".join(chr(34) + n + chr(34) for n in names)} FROM "{table.name}"'
            )
            count = 0
            cols = ", ".join(f'"{n}"' for n in names)
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
                for row in rows:
                    if any(bools):
                        row = tuple(
                            bool(v) if b and v is not None else v
                            for v, b in zip(row, bools, strict=True)
                        )
                    copy.write_row(row)
                    count += 1
            if "id" in names and table.c.id.autoincrement is not False and count:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                    f'(SELECT max(id) FROM "{table.name}"))'
                )
            if count > 10_000:
                log(
                    f"  copied {count:,} rows of {table.name} in "
                    f"{time.perf_counter() - started:.0f} s"
                )
        raw.commit()
    finally:
        raw.close()
        source.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


# --------------------------------------------------------------------------- load


@dataclass
class Kind:
    """One request type: GET of ``paths`` in turn, or (``method`` PATCH) a JSON body
    setting :data:`UPDATE_FIELD` to a value new on every request."""

    name: str
    paths: list[str]
    method: str = "GET"

    def body(self, i: int) -> bytes:
        return b"" if self.method == "GET" else UPDATE_BODY % i

    def request(self, i: int, head: bytes) -> bytes:
        line = f"{self.method} {self.paths[i % len(self.paths)]} HTTP/1.1\r\n".encode()
        body = self.body(i)
        if not body:
            return line + head + b"\r\n"
        return (
            line
            + head
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )


def lua(kind: Kind, token: str) -> str:
    quoted = ",\n".join(json.dumps(p) for p in kind.paths)
    if kind.method == "GET":
        call = 'wrk.format("GET", paths[i])'
    else:  # a value new on every request (n: this connection's thread's count)
        prefix, suffix = UPDATE_BODY.decode().split("%d")
        call = (
            f"wrk.format({json.dumps(kind.method)}, paths[i], nil, "
            f"{json.dumps(prefix)} .. n .. {json.dumps(suffix)})"
        )
    return f"""
local paths = {{
{quoted}
}}
local i = 0
local n = 0
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #paths + 1
  n = n + 1
  return {call}
end
"""


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start in 60 s")


def login(base: str) -> str:
    body = json.dumps({"login": "bench-admin", "password": PASSWORD}).encode()
    req = urllib.request.Request(
        base + "/api/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        token: str = json.loads(r.read())["token"]
        return token


def parse_ms(value: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", value))
    unit = re.sub(r"^[0-9.]+", "", value)
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    base: str, script: Path, connections: int, duration: int
) -> tuple[int, float, float, float, float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.M))
    if len(pct) != 3:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    bad = int(bad_match.group(1)) if bad_match else 0
    if errors:
        print(errors.group(0), file=sys.stderr)
    return (requests, rps, parse_ms(pct["50"]), parse_ms(pct["90"]), parse_ms(pct["99"]), bad)


async def _open_loop(
    port: int, kind: Kind, token: str, rate: float, duration: float
) -> tuple[list[float], int, float]:
    """Send ``rate`` requests/s on a fixed schedule; latencies from the scheduled times."""
    total = int(rate * duration)
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    latencies: list[float] = []
    bad = 0
    head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n".encode()

    async def client() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                i, due = await queue.get()
                if i < 0:
                    return
                writer.write(kind.request(i, head))
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - due)
                if status_line.split()[1:2] != [b"200"]:
                    bad += 1
        finally:
            writer.close()

    clients = [asyncio.ensure_future(client()) for _ in range(OPEN_LOOP_CONNECTIONS)]
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in clients:
        queue.put_nowait((-1, 0.0))
    try:  # a server far slower than the rate: what is not answered by then is late
        await asyncio.wait_for(asyncio.gather(*clients), timeout=duration + DRAIN_SECONDS)
    except TimeoutError:
        now = time.perf_counter()
        unanswered = total - len(latencies)
        # the queue is served in order: the unanswered are the last ones scheduled; each
        # is counted as failed, its latency at least the time it has waited so far
        latencies += [now - (start + i / rate) for i in range(total - unanswered, total)]
        bad += unanswered
        print(f"{unanswered:,} requests not answered within {DRAIN_SECONDS} s", file=sys.stderr)
    return latencies, bad, time.perf_counter() - start


def run_open_loop(
    port: int, kind: Kind, token: str, rate: float, duration: float
) -> tuple[int, float, float, float, float, int]:
    try:  # the server's event loop, cheaper per request for the client too
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        latencies, bad, elapsed = runner.run(_open_loop(port, kind, token, rate, duration))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000

    return len(latencies), len(latencies) / elapsed, pct(50), pct(90), pct(99), bad


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int, db: str) -> float:
    """CPU time so far of ``root`` and its children, plus PostgreSQL's processes on ``db``."""
    pids = [root]
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(path.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == root:
            pids.append(int(path.parent.name))
    total = 0.0
    if db == "postgresql":
        for path in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmd = path.read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"postgres: ") and PG_BENCH_DB.encode() in cmd:
                pids.append(int(path.parent.name))
        total += _ended_backends_cpu()
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended meanwhile
            total += _proc_cpu(pid)
    return total


def _ended_backends_cpu() -> float:
    """CPU time of PostgreSQL's backends that have ended (a connection the pool closed
    beyond its size): the postmaster reaps them, so it is its children's time
    (``cutime`` + ``cstime``). Without it, a run whose connections come and go would
    lose their work from the count."""
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = path.read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and b"-D" in cmd:  # the postmaster
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (path.parent / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@contextmanager
def server(env: dict[str, str], workers: int) -> Iterator[tuple[str, int, int]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli = Path(sys.executable).parent / "provisioner"
    import provisioner  # the server runs the provisioner this script imported

    source = str(Path(provisioner.__file__).resolve().parent.parent)
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [
            str(cli),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        wait_ready(base, proc)
        yield base, port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def measure(
    db: str,
    env: dict[str, str],
    kinds: dict[str, Kind],
    args: argparse.Namespace,
    tmp: Path,
    log: Callable[[str], None],
) -> list[Run]:
    runs: list[Run] = []
    for workers in args.workers:
        with server(env, workers) as (base, port, pid):
            token = login(base)
            for name in args.kinds:
                kind = kinds[name]
                script = tmp / f"{name}.lua"
                script.write_text(lua(kind, token))
                run_wrk(base, script, args.connections, 2)  # warm-up: caches, connections
                before = cpu_seconds(pid, db)
                got = run_wrk(base, script, args.connections, args.duration)
                cpu = (cpu_seconds(pid, db) - before) / max(1, got[0]) * 1000
                runs.append(
                    Run(db, name, workers, f"saturation, {args.connections} conn.", *got, cpu)
                )
                log(
                    f"{db} {name} workers={workers} saturation: {got[1]:,.0f} req/s, "
                    f"p50 {got[2]:.2f} ms, p99 {got[4]:.2f} ms, non-2xx {got[5]}, "
                    f"server CPU {cpu:.2f} ms/req"
                )
                half = round(got[1] / 2)
                rates = [(float(half), f"offered {half:,}/s (half saturation)")] if half else []
                extra = {"lookup": args.rate, "search": args.search_rate}.get(name, [])
                rates += [(r, f"offered {r:,.0f}/s") for r in extra if r > 0]
                for rate, mode in rates:
                    before = cpu_seconds(pid, db)
                    got = run_open_loop(port, kind, token, rate, args.duration)
                    cpu = (cpu_seconds(pid, db) - before) / max(1, got[0]) * 1000
                    runs.append(Run(db, name, workers, mode, *got, cpu))
                    log(
                        f"{db} {name} workers={workers} {mode}: "
                        f"{got[1]:,.0f} req/s, p50 {got[2]:.2f} ms, p99 {got[4]:.2f} ms, "
                        f"non-2xx {got[5]}, server CPU {cpu:.2f} ms/req"
                    )
    return runs


def kinds_for(phones: list[str], terms: list[str], contact_ids: list[int]) -> dict[str, Kind]:
    """The request types' paths (bench tenant)."""

    def get(route: str, param: str, values: list[str]) -> list[str]:
        return [f"/api/tenants/bench/{route}?{param}={urllib.parse.quote(v)}" for v in values]

    return {
        "bare": Kind("bare", [BENCH_BARE_PATH.format(tenant="bench")]),
        "lookup": Kind("lookup", get("lookup", "phone", phones)),
        "search": Kind("search", get("search", "q", terms)),
        "update": Kind(
            "update",
            [f"/api/tenants/bench/records/contact/{i}" for i in contact_ids],
            method="PATCH",
        ),
    }


def contact_ids(sqlite_path: Path, n: int = 2000) -> list[int]:
    """``n`` contact ids of the bench tenant spread over it (the update requests' targets)."""
    import sqlite3

    with sqlite3.connect(sqlite_path) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT crm_contacts.id FROM crm_contacts JOIN tenants ON "
                "tenants.id = crm_contacts.tenant_id WHERE tenants.slug = 'bench' "
                "ORDER BY crm_contacts.id"
            )
        ]
    step = max(1, len(ids) // n)
    picked = ids[::step][:n]
    random.Random(11).shuffle(picked)
    return picked


@dataclass
class InProcess:
    #: CPU ms per call of each layer of a lookup (mean)
    costs: dict[str, float]
    #: wall-clock ms per call: name -> (median, p99)
    latency: dict[str, tuple[float, float]]
    #: the body of one lookup's answer (what the bare route answers)
    lookup_body: bytes


def bench_env(env: dict[str, str], measured: InProcess, tmp: Path) -> dict[str, str]:
    """The server's environment with the bare route answering a lookup's bytes."""
    path = tmp / "lookup-body.json"
    path.write_bytes(measured.lookup_body)
    return {**env, "PROVISIONER_BENCH_ROUTES": "1", "PROVISIONER_BENCH_BODY": str(path)}


def in_process_costs(env: dict[str, str], phones: list[str], n: int = 2000) -> InProcess:
    """CPU ms per call, in this process, of the layers of one lookup request (no sockets);
    wall-clock median and p99 of the lookup's database work against ``SELECT 1``."""
    from sqlalchemy import text

    from provisioner.services.crm import search
    from provisioner.web.security import acting
    from provisioner.web.server import app_from_environment

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        web = app_from_environment()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    app: Provisioner = web.state.provisioner
    with app.transaction() as ctx:
        token = auth.login(ctx, "bench-admin", PASSWORD).token

    def empty(_: str) -> None:
        with app.transaction(read_only=True):
            pass

    def session(_: str) -> None:
        with acting(app, token, "bench", read_only=True):
            pass

    def lookup(phone: str) -> None:
        with acting(app, token, "bench", read_only=True) as (ctx, actor):
            search.lookup(ctx, actor, phone)

    def select_1(_: str) -> None:
        with app.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()

    async def asgi(phone: str) -> None:
        query = urllib.parse.urlencode({"phone": phone}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/tenants/bench/lookup",
            "raw_path": b"/api/tenants/bench/lookup",
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        status: list[int] = []
        body.clear()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await web(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"in-process lookup answered {status}")

    body: list[bytes] = []

    def walled(call: Callable[[str], None]) -> tuple[float, float]:
        """Median and p99 wall-clock ms per call (after 100 calls' warm-up)."""
        for phone in phones[:100]:
            call(phone)
        times = []
        for i in range(n):
            started = time.perf_counter()
            call(phones[i % len(phones)])
            times.append(time.perf_counter() - started)
        times.sort()
        return times[len(times) // 2] * 1000, times[min(n - 1, n * 99 // 100)] * 1000

    def raw_select_1() -> tuple[float, float]:
        """One round trip on a connection held out of the pool (no transaction)."""
        raw = app.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            if hasattr(driver, "autocommit"):
                driver.autocommit = True
            cur = raw.cursor()
            times = []
            for i in range(n + 100):
                started = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchone()
                if i >= 100:
                    times.append(time.perf_counter() - started)
            cur.close()
            if hasattr(driver, "autocommit"):
                driver.autocommit = False
        finally:
            raw.close()
        times.sort()
        return times[len(times) // 2] * 1000, times[min(n - 1, n * 99 // 100)] * 1000

    def timed(call: Callable[[str], None]) -> float:
        for phone in phones[:100]:
            call(phone)
        started = time.process_time()
        for i in range(n):
            call(phones[i % len(phones)])
        return (time.process_time() - started) / n * 1000

    async def timed_asgi() -> float:
        async with web.router.lifespan_context(web):
            for phone in phones[:100]:
                await asgi(phone)
            started = time.process_time()
            for i in range(n):
                await asgi(phones[i % len(phones)])
            return (time.process_time() - started) / n * 1000

    async def one_body() -> bytes:
        async with web.router.lifespan_context(web):
            await asgi(phones[0])
        return b"".join(body)

    try:
        costs = {
            "empty read-only transaction": timed(empty),
            "+ session check (token -> user, tenant, role)": timed(session),
            "+ search.lookup (contact, activities, purchases)": timed(lookup),
            "whole request through the ASGI app (routing, parameters, JSON)": asyncio.run(
                timed_asgi()
            ),
        }
        latency = {
            LAT_RAW: raw_select_1(),
            LAT_SELECT: walled(select_1),
            LAT_LOOKUP: walled(lookup),
        }
        return InProcess(costs, latency, asyncio.run(one_body()))
    finally:
        app.engine.dispose()


# --------------------------------------------------------------------------- report


def section(
    runs: list[Run],
    args: argparse.Namespace,
    contacts: int,
    setup: str,
    when: str,
    measured: dict[str, InProcess],
) -> str:
    costs = {db: m.costs for db, m in measured.items()}
    rows = "\n".join(
        f"| {r.db} | {r.scenario} | {r.workers} | {r.mode} | {r.requests:,} | {r.rps:,.0f} | "
        f"{r.p50:.2f} | {r.p90:.2f} | {r.p99:.2f} | {r.bad} | {r.cpu_ms:.2f} |"
        for r in runs
    )
    verdicts = []
    for db in dict.fromkeys(r.db for r in runs):
        lookups = [r for r in runs if r.db == db and r.scenario == "lookup"]
        if not any(r.mode.startswith("saturation") for r in lookups):
            continue
        best = max((r for r in lookups if r.mode.startswith("saturation")), key=lambda r: r.rps)
        paced = [r for r in lookups if r.mode == f"offered {TARGET_RPS:,}/s" and r.bad == 0]
        ok_paced = [r for r in paced if r.rps >= 0.98 * TARGET_RPS and r.p99 <= TARGET_P99_MS]
        met = best.rps >= TARGET_RPS and bool(ok_paced)
        p99s = (
            ", ".join(f"{r.workers} worker(s) {r.p99:.2f} ms at {r.rps:,.0f}/s" for r in paced)
            or "no run"
        )
        verdicts.append(
            f"* {db}: saturation {best.rps:,.0f} req/s ({best.workers} worker(s)); p99 at "
            f"the offered rate: {p99s} -> **{'met' if met else 'NOT met'}**"
        )
    kinds_table, kinds_verdicts = per_kind(runs)
    latency_table, latency_verdicts = in_process_latency(measured)
    scale = (
        ""
        if contacts >= 1_000_000
        else (
            f"\n**Measured on a {contacts:,}-contact tenant, not the 1,000,000 of the target.**\n"
        )
    )
    reuse = " --reuse DIR" if args.reuse else f" --contacts {contacts}"
    rates = " ".join(f"{r:g}" for r in args.rate)
    prepared = (
        (f" (DIR built once by `bench/bench_http.py --prepare DIR --contacts {contacts}`)")
        if args.reuse
        else ""
    )
    return f"""{SECTION_TITLE}

`provisioner serve` (uvicorn) on loopback, tenant with {contacts:,} contacts between two
small tenants. Measured {when}; {machine()}.
{scale}
Reproduce: `.venv/bin/python bench/bench_http.py --db {args.db}{reuse} --duration
{args.duration} --connections {args.connections} --rate {rates}
--workers {" ".join(map(str, args.workers))}`{prepared}

Method: two kinds of run per request type and worker count, the load generator on
the same 2-core machine as the server.

* *saturation*: `wrk` (closed loop, one thread, {args.connections} keep-alive
  connections, {args.duration} s after a 2 s warm-up): the throughput. Its latencies
  are mostly time spent queueing behind the other connections' requests.
* *offered N/s*: an open-loop asyncio client (this script) sends N requests per
  second on a fixed schedule for {args.duration} s over up to
  {OPEN_LOOP_CONNECTIONS} keep-alive connections; each latency runs from the
  request's scheduled send time to the last byte of its response, so waiting for
  a slow server (or a free connection) counts. "req/s" there is the rate
  answered. This is the p99 of the target: the latency a caller sees while the
  service carries 1,000 lookups per second.
* *server CPU ms/req*: CPU time of the server's processes (on PostgreSQL also the
  database's backends serving them) over the run, per request answered: the
  cost that decides the throughput on two shared cores.
* request types: *bare* is the benchmark route (`PROVISIONER_BENCH_ROUTES=1`, off
  by default): the same server, workers, middleware, routing and parameters
  (tenant, bearer token) as the API, no session check and no database work,
  answering the bytes of one lookup's JSON answer held in memory; *lookup* and
  *search* as above; *update* is `PATCH /api/tenants/bench/records/contact/{{id}}`
  setting `{UPDATE_FIELD}` to a new value on every request, over 2,000 contacts.
  Each type runs at saturation, then open-loop at *half the rate its saturation
  run answered* (and, for the lookup, at the offered rates given).
* *ratio to bare*: a type's saturation *server CPU ms/req* over the bare route's
  in the same run (database, workers): what the service layer and the database
  add to a request's fixed HTTP cost. Target (issue 16): at most
  {TARGET_CPU_RATIO:g}x, and p99 at half the saturation rate at most
  {TARGET_P99_MS:g} ms.

Per request type (the table below condensed):

| database | request | workers | saturation req/s | server CPU ms/req | ratio to bare \
| p99 ms at half saturation (rate) | non-2xx | verdict |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{kinds_table}

{chr(10).join(kinds_verdicts)}

All runs:

| database | request | workers | load | requests | req/s | p50 ms | p90 ms | p99 ms | non-2xx \
| server CPU ms/req |
| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Where a lookup's CPU goes, in-process (no sockets, CPU ms of this process per call,
the mean of 2,000 calls, PostgreSQL's own CPU not included; each row includes the
ones above it):

| layer | {" | ".join(costs)} |
| --- | {" | ".join("---:" for _ in costs)} |
{
        chr(10).join(
            f"| {layer} | " + " | ".join(f"{c[layer]:.3f}" for c in costs.values()) + " |"
            for layer in next(iter(costs.values()), {})
        )
    }

The rest of *server CPU ms/req* is uvicorn (httptools, uvloop) and the kernel's
socket work; with two workers the two cores are shared with the load generator.

A lookup's database work against the bare round trip, in-process on the same
connection pool, one call at a time (wall-clock ms over 2,000 calls, median and
p99; the lookup's "ratio" is its median over the pooled `SELECT 1`'s). Target
(issue 16, PostgreSQL, 1,000,000 contacts): median ratio at most
{TARGET_PG_MEDIAN_RATIO:g}x and p99 at most {TARGET_PG_P99_MS:g} ms.

{latency_table}

{chr(10).join(latency_verdicts)}

Setup: {setup}

Target (lookup >= {TARGET_RPS:,} req/s and p99 <= {TARGET_P99_MS:g} ms at {TARGET_RPS:,}
req/s):

{chr(10).join(verdicts)}
"""


def per_kind(runs: list[Run]) -> tuple[str, list[str]]:
    """The per-type table (saturation, CPU, ratio to bare, p99 at half) and its verdicts."""
    rows, verdicts = [], []
    for r in runs:
        if not r.mode.startswith("saturation"):
            continue
        bare = next(
            (
                b
                for b in runs
                if b.db == r.db
                and b.workers == r.workers
                and b.scenario == "bare"
                and b.mode.startswith("saturation")
            ),
            None,
        )
        half = next(
            (
                h
                for h in runs
                if (h.db, h.scenario, h.workers) == (r.db, r.scenario, r.workers)
                and h.mode.endswith("(half saturation)")
            ),
            None,
        )
        ratio = r.cpu_ms / bare.cpu_ms if bare and bare.cpu_ms > 0 else None
        bad = r.bad + (half.bad if half else 0)
        met = (
            ratio is not None
            and ratio <= TARGET_CPU_RATIO
            and half is not None
            and half.p99 <= TARGET_P99_MS
            and half.rps >= 0.98 * round(r.rps / 2)
            and bad == 0
        )
        misses = []
        if ratio is None or ratio > TARGET_CPU_RATIO:
            misses.append("CPU ratio")
        if half is None or half.p99 > TARGET_P99_MS:
            misses.append("p99")
        if half is not None and half.rps < 0.98 * round(r.rps / 2):
            misses.append("rate not carried")
        if bad:
            misses.append("non-2xx")
        verdict = "met" if met else "NOT met (" + ", ".join(misses) + ")"
        if r.scenario == "bare":
            verdict = "base" + ("" if half and half.p99 <= TARGET_P99_MS else " (p99 over)")
        rows.append(
            f"| {r.db} | {r.scenario} | {r.workers} | {r.rps:,.0f} | {r.cpu_ms:.2f} | "
            + (f"{ratio:.2f}x" if ratio is not None else "-")
            + " | "
            + (f"{half.p99:.2f} ({half.rps:,.0f}/s)" if half else "-")
            + f" | {bad} | {verdict} |"
        )
        if r.scenario != "bare":
            verdicts.append(
                f"* {r.db}, {r.scenario}, {r.workers} worker(s): CPU "
                + (f"{ratio:.2f}x bare" if ratio is not None else "no bare run")
                + (f", p99 {half.p99:.2f} ms at {half.rps:,.0f}/s" if half else ", no paced run")
                + f" -> **{'met' if met else 'NOT met'}**"
            )
    return "\n".join(rows), verdicts


def in_process_latency(measured: dict[str, InProcess]) -> tuple[str, list[str]]:
    """The in-process latency table (lookup against SELECT 1) and the PostgreSQL verdict."""
    dbs = list(measured)
    head = "| call | " + " | ".join(f"{db} median ms | {db} p99 ms | {db} ratio" for db in dbs)
    lines = [head + " |", "| --- |" + " ---: | ---: | ---: |" * len(dbs)]
    for name in (LAT_RAW, LAT_SELECT, LAT_LOOKUP):
        cells = []
        for db in dbs:
            med, p99 = measured[db].latency[name]
            base = measured[db].latency[LAT_SELECT][0]
            cells.append(f"{med:.3f} | {p99:.3f} | {med / base:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    verdicts = []
    for db in dbs:
        med, p99 = measured[db].latency[LAT_LOOKUP]
        ratio = med / measured[db].latency[LAT_SELECT][0]
        met = ratio <= TARGET_PG_MEDIAN_RATIO and p99 <= TARGET_PG_P99_MS
        verdicts.append(
            f"* {db}: lookup median {med:.3f} ms = {ratio:.2f}x the pooled SELECT 1, p99 "
            f"{p99:.3f} ms -> **{'met' if met else 'NOT met'}**"
            + ("" if db == "postgresql" else " (the target is PostgreSQL's; for comparison)")
        )
    return "\n".join(lines), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[TARGET_RPS],
        help="offered lookups per second of the open-loop runs",
    )
    parser.add_argument(
        "--search-rate",
        type=float,
        nargs="*",
        default=[],
        help="offered searches per second (open-loop runs; default none)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="request types to run (bare: the benchmark route, the ratios' base)",
    )
    parser.add_argument(
        "--prepare",
        type=Path,
        metavar="DIR",
        help="only build the SQLite data into DIR for later --reuse runs",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="run against DIR (bench.db, master_key.b64, inputs.json) instead of building the data",
    )
    parser.add_argument("--no-write", action="store_true")
    args = bench_core.parse_args(parser)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.prepare:
        prepare(args.prepare, args.contacts, log)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if args.reuse and not (args.reuse / "bench.db").is_file():
        raise SystemExit(f"{args.reuse}: no bench.db there (build one with --prepare)")

    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    if args.reuse:
        key = (args.reuse / "master_key.b64").read_text().strip()
    else:
        key = base64.b64encode(os.urandom(32)).decode()
    base_env = {**os.environ, "PROVISIONER_HOME": str(tmp), "PROVISIONER_MASTER_KEY": key}
    os.environ.update(base_env)
    runs: list[Run] = []
    costs: dict[str, InProcess] = {}
    setups: list[str] = []
    contacts = args.contacts
    try:
        sqlite_db = tmp / "bench.db"
        phones: list[str] = []
        terms: list[str] = []
        started = time.perf_counter()
        if args.reuse:
            shutil.copyfile(args.reuse / "bench.db", sqlite_db)
            engine = make_engine(f"sqlite:///{sqlite_db}")
            migrate.upgrade(engine)  # a directory prepared by an older version
            engine.dispose()
            setups.append(
                f"copied the prepared SQLite database in {time.perf_counter() - started:.0f} s"
            )
            inputs = args.reuse / "inputs.json"
            if inputs.exists():
                data = json.loads(inputs.read_text())
                phones, terms = data["phones"], data["terms"]
            else:
                phones, terms = sample_inputs(f"sqlite:///{sqlite_db}")
        else:
            phones, terms = build(f"sqlite:///{sqlite_db}", args.contacts, log)
            setups.append(f"built the SQLite data in {time.perf_counter() - started:.0f} s")
        import sqlite3

        with sqlite3.connect(sqlite_db) as conn:
            contacts = conn.execute(
                "SELECT count(*) FROM crm_contacts JOIN tenants ON "
                "tenants.id = crm_contacts.tenant_id "
                "WHERE tenants.slug = 'bench'"
            ).fetchone()[0]
        kinds = kinds_for(phones, terms, contact_ids(sqlite_db))
        # PostgreSQL is loaded from the data as built, not as the SQLite runs left it
        # (their lookups' call records, their updates)
        pristine = tmp / "pristine.db"
        if args.db == "both":
            shutil.copyfile(sqlite_db, pristine)
        for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
            if db == "sqlite":
                env = {**base_env, "PROVISIONER_DATABASE_URL": f"sqlite:///{sqlite_db}"}
                costs[db] = in_process_costs(env, phones)
                log(f"{db} in-process: {costs[db].costs} {costs[db].latency}")
                runs += measure(db, bench_env(env, costs[db], tmp), kinds, args, tmp, log)
                continue
            with bench_core.postgres_url(PG_BENCH_DB) as url:
                started = time.perf_counter()
                copy_sqlite_to_postgres(pristine if args.db == "both" else sqlite_db, url, log)
                setups.append(f"loaded it into PostgreSQL in {time.perf_counter() - started:.0f} s")
                bench_core.app_engine(url).dispose()  # the runtime role, granted (what ships)
                setups.append(f"served as {bench_core.role_measured(url)}")
                env = {**base_env, "PROVISIONER_DATABASE_URL": bench_core.runtime_url(url)}
                if bench_core.AS_SUPERUSER:  # serve refuses a superuser unless told
                    env["PROVISIONER_ALLOW_SUPERUSER"] = "1"
                costs[db] = in_process_costs(env, phones)
                log(f"{db} in-process: {costs[db].costs} {costs[db].latency}")
                runs += measure(db, bench_env(env, costs[db], tmp), kinds, args, tmp, log)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        setup = "; ".join(setups) + (
            f". Load average (1, 5, 15 min) at the start: {load_before}; when done: {load}."
        )
        body = section(runs, args, contacts, setup, when, costs)
        print(body)
        if not args.no_write:
            bench_core.write_section(body, SECTION_TITLE)
            log(f"wrote section {SECTION_TITLE!r} of {bench_core.DOC_PATH}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
