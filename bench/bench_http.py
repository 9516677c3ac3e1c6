"""HTTP performance: phone lookup and customer search through ``provisioner serve`` on loopback.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_http.py                        # SQLite, 1,000,000 contacts
    .venv/bin/python bench/bench_http.py --contacts 100000 --duration 5 --no-write

Setup (timed, not judged): a fresh database with a small tenant, the bench
tenant with N contacts (``seed.seed_contacts``: realistic names, kana, phones)
and another small tenant after it; an admin with a password logs in through
the API for a bearer token.

Load: the real server (``uvicorn provisioner.web.server:app_from_environment``
in its own processes, ``--workers`` 1 and 2) and ``wrk`` (one thread,
``--connections`` keep-alive connections, ``--duration`` seconds per run) on
the same 2-core machine, so the load generator takes its share of the CPU.

* **lookup**: ``GET /api/tenants/bench/lookup?phone=...`` over 2,000 real numbers
  of the tenant written in varied formats (03-1234-5678, +81 3 1234 5678,
  full-width digits): every response must be 200.
* **search**: ``GET /api/tenants/bench/search?q=...`` (first page of 50 and the
  exact total) over 1..4-character terms drawn from the data (surnames, kana,
  phone digits): every response must be 200.

Reported: requests/s and wrk's latency percentiles (p50, p90, p99). Target
(issue: HTTP service): lookup p99 <= 10 ms and >= 1,000 requests/s. The section
"## HTTP" of ``docs/performance.md`` is written (replaced).
"""

from __future__ import annotations

import argparse
import base64
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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

SECTION_TITLE = "## HTTP"
PASSWORD = "bench password 1"
FULL = str.maketrans("0123456789", "０１２３４５６７８９")


@dataclass
class Run:
    scenario: str
    workers: int
    requests: int
    rps: float
    p50: float
    p90: float
    p99: float
    bad: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build(url: str, contacts: int, log: Callable[[str], None]) -> tuple[list[str], list[str]]:
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
    from sqlalchemy import text

    with engine.connect() as conn:
        tid = conn.execute(text("SELECT id FROM tenants WHERE slug = 'bench'")).scalar_one()
        step = max(1, contacts // 2000)
        rows = conn.execute(text(
            "SELECT phone, name, kana FROM crm_contacts WHERE tenant_id = :t AND phone <> '' "
            "AND id % :s = 0 LIMIT 2000"), {"t": tid, "s": step}).all()
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
        pick = rng.choice([surname[:1], surname[:2], kana.replace(" ", "")[:3],
                           name.replace(" ", "")[:4]])
        terms.append(pick)
    terms += [re.sub(r"\D", "", p)[-4:] for p, _, _ in rows[:100]]
    return phones, [t for t in terms if t]


def lua(paths: list[str], token: str) -> str:
    quoted = ",\n".join(json.dumps(p) for p in paths)
    return f"""
local paths = {{
{quoted}
}}
local i = 0
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
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
    req = urllib.request.Request(base + "/api/login", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        token: str = json.loads(r.read())["token"]
        return token


def parse_ms(value: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", value))
    unit = re.sub(r"^[0-9.]+", "", value)
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(base: str, script: Path, connections: int, duration: int, scenario: str,
            workers: int) -> Run:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(script), base], capture_output=True, text=True, check=True
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
    return Run(scenario, workers, requests, rps, parse_ms(pct["50"]), parse_ms(pct["90"]),
               parse_ms(pct["99"]), bad)


def section(runs: list[Run], args: argparse.Namespace, setup: str, when: str) -> str:
    lookup = [r for r in runs if r.scenario == "lookup"]
    best = max(lookup, key=lambda r: r.rps)
    met = best.p99 <= 10 and best.rps >= 1000
    rows = "\n".join(
        f"| {r.scenario} | {r.workers} | {r.requests:,} | {r.rps:,.0f} | {r.p50:.2f} | "
        f"{r.p90:.2f} | {r.p99:.2f} | {r.bad} |" for r in runs)
    scale = "" if args.contacts >= 1_000_000 else (
        f"\n**Measured on a {args.contacts:,}-contact tenant, not the 1,000,000 of the "
        "target** (see the command line).\n")
    return f"""{SECTION_TITLE}

`provisioner serve`'s app on uvicorn, driven by `wrk` on loopback (one thread,
{args.connections} connections, {args.duration} s per run) on the same machine.
Tenant with {args.contacts:,} contacts between two small tenants, {args.db}.
Measured {when}; {machine()}.
{scale}
Reproduce: `.venv/bin/python bench/bench_http.py --contacts {args.contacts} --duration
{args.duration} --connections {args.connections}`

| request | workers | requests | req/s | p50 ms | p90 ms | p99 ms | non-2xx |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Setup: {setup}

With {args.connections} connections the latencies are mostly queueing (p50 ~=
connections / throughput); `--connections 1` shows one request's own time.

Target (lookup p99 <= 10 ms and >= 1,000 req/s): best lookup run
{best.workers} worker(s): {best.rps:,.0f} req/s, p99 {best.p99:.2f} ms -> **{"met" if met
else "NOT met"}**.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite"], default="sqlite")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = {**os.environ, "PROVISIONER_HOME": str(tmp),
           "PROVISIONER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
    os.environ.update(env)
    try:
        started = time.perf_counter()
        phones, terms = build(env["PROVISIONER_DATABASE_URL"], args.contacts, log)
        setup = f"{time.perf_counter() - started:.0f} s to build the data."
        runs: list[Run] = []
        for workers in args.workers:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "provisioner.web.server:app_from_environment",
                 "--factory", "--host", "127.0.0.1", "--port", str(port), "--workers",
                 str(workers), "--log-level", "warning", "--no-access-log"], env=env)
            try:
                wait_ready(base, proc)
                token = login(base)
                for scenario, values, param in (("lookup", phones, "phone"),
                                                ("search", terms, "q")):
                    paths = [f"/api/tenants/bench/{scenario}?{param}="
                             f"{urllib.parse.quote(v)}" for v in values]
                    script = tmp / f"{scenario}.lua"
                    script.write_text(lua(paths, token))
                    # warm-up (caches, connections), then the measured run
                    run_wrk(base, script, args.connections, 2, scenario, workers)
                    run = run_wrk(base, script, args.connections, args.duration, scenario,
                                  workers)
                    log(f"{scenario} workers={workers}: {run.rps:,.0f} req/s, p50 "
                        f"{run.p50:.2f} ms, p99 {run.p99:.2f} ms, non-2xx {run.bad}")
                    runs.append(run)
            finally:
                proc.terminate()
                proc.wait(10)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0]
        body = section(runs, args, setup + f" Load average when done: {load:.1f}.", when)
        print(body)
        if not args.no_write:
            bench_core.write_section(body, SECTION_TITLE)
            log(f"wrote section {SECTION_TITLE!r} of {bench_core.DOC_PATH}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
