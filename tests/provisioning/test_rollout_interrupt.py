"""A real interruption: the ``provisioner rollout`` process is stopped (SIGINT, then
SIGKILL) in the middle of a run -- wherever it is, possibly inside a transaction -- and
``--resume`` finishes it; no target is lost, half-written or delivered twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select

from provisioner.db.models import ConfigVersion, Tenant, Transfer
from provisioner.db.provisioning_models import RolloutRun, RolloutTarget
from provisioner.services import actors, signing
from provisioner.services.context import Provisioner
from tests.support import World, labelled

TARGETS = 150
CLI = [sys.executable, "-c", "from provisioner.cli.main import main; main()"]


def _spawn(db_url: str, *args: str) -> subprocess.Popen[str]:
    # SIGINT as a terminal delivers it, even when this test runs where it is ignored (a
    # background job of a shell): the child starts with the default disposition
    return subprocess.Popen(
        [*CLI, "--db", db_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stop_midway(
    watch: Engine, proc: subprocess.Popen[str], sig: int, at_least: int
) -> tuple[int, str]:
    """Signal the process as soon as ``at_least`` targets are done -- wherever it is then,
    possibly in the middle of a transaction. ``watch`` only reads (it never takes a lock
    the process could wait for)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rollout made no progress"
        with watch.connect() as conn:
            done = conn.scalar(
                select(func.count())
                .select_from(RolloutTarget)
                .where(RolloutTarget.status != "pending")
            )
        if (done or 0) >= at_least:
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def _check_consistent(app: Provisioner) -> dict[str, int]:
    """Every applied target has exactly one applied transfer and version 2; the others none."""
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every tenant
        rows = ctx.session.execute(
            select(
                RolloutTarget.target_slug,
                RolloutTarget.status,
                Tenant.config_version,
                func.count(Transfer.id),
            )
            .join(Tenant, Tenant.slug == RolloutTarget.target_slug)
            .outerjoin(Transfer, Transfer.tenant_id == Tenant.id)
            .group_by(RolloutTarget.target_slug, RolloutTarget.status, Tenant.config_version)
        ).all()
        versions = ctx.session.scalar(select(func.count()).select_from(ConfigVersion)) or 0
    counts: dict[str, int] = {}
    for slug, status, version, transfers in rows:
        counts[status] = counts.get(status, 0) + 1
        expected = (2, 1) if status == "applied" else (1, 0)
        assert (version, transfers) == expected, (slug, status, version, transfers)
    assert versions == 1 + TARGETS + counts.get("applied", 0) + 1  # hq has 2 versions
    return counts


def test_killed_rollout_resumes_without_loss_or_duplicates(
    app: Provisioner, world: World, db_url: str, tmp_path: Path
) -> None:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    bundle = tmp_path / "hq.bundle"
    bundle.write_bytes(world.export("hq"))
    slugs = [f"shop-{n:02d}" for n in range(TARGETS)]
    with app.transaction() as ctx:
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
    for slug in slugs:
        world.tenant(slug)
        with app.transaction() as ctx:
            signing.trust(
                ctx, actors.resolve(ctx, f"{slug}-admin", slug), pem, label="本部", policy="auto"
            )
    targets = tmp_path / "targets.txt"
    targets.write_text("\n".join(slugs) + "\n")
    hq = ("rollout", "-t", "hq", "--as", "hq-admin")

    # the watcher inspects every tenant's rows (PostgreSQL: operator read for its sessions)
    watch = create_engine(
        db_url,
        connect_args={"options": "-c provisioner.operator=read"}
        if db_url.startswith("postgresql")
        else {},
    )
    try:
        # Ctrl-C: the batch in flight rolls back, the process says how to resume
        proc = _spawn(
            db_url,
            *hq,
            "--bundle",
            str(bundle),
            "--targets-file",
            str(targets),
            "--batch-size",
            "1",
        )
        code, err = _stop_midway(watch, proc, signal.SIGINT, at_least=3)
        assert code == 130, err
        assert "rollout 1 interrupted" in err
        assert "--resume 1" in err
        first = _check_consistent(app)
        assert first["applied"] >= 3
        assert first["pending"] >= 1

        # a crash (SIGKILL) during the resume: the same guarantees
        proc = _spawn(db_url, *hq, "--resume", "1", "--batch-size", "1")
        code, _ = _stop_midway(watch, proc, signal.SIGKILL, at_least=first["applied"] + 3)
        assert code == -signal.SIGKILL
        second = _check_consistent(app)
        assert first["applied"] < second["applied"] < TARGETS
    finally:
        watch.dispose()

    # the last resume finishes the run
    done = subprocess.run(
        [*CLI, "--db", db_url, "--json", *hq, "--resume", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "finished"
    assert summary["counts"] == {"applied": TARGETS}
    assert _check_consistent(app) == {"applied": TARGETS}
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects the run
        run = ctx.session.get(RolloutRun, 1)
        assert run is not None
        assert run.finished_at is not None
