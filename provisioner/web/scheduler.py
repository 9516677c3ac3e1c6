"""The date scheduler inside ``provisioner serve``: date-triggered workflow rules fire
without a cron job.

Each worker process runs one daemon thread that calls
:func:`provisioner.services.workflows.run_due` every ``interval`` seconds (the first
time shortly after start, which also catches up after a restart). Several workers or
servers on one database may all run it: each due firing is claimed by a key in the
database, so it happens once.

    scheduler = DueScheduler(provisioner, interval=300); scheduler.start(); scheduler.stop()
"""

from __future__ import annotations

import logging
import threading

from provisioner.errors import ProvisionerError
from provisioner.services import workflows
from provisioner.services.context import Provisioner

log = logging.getLogger("provisioner.scheduler")

#: seconds between runs by default (``serve --scheduler-seconds``; 0 turns it off)
DEFAULT_INTERVAL = 300.0
#: seconds after start before the first run (the server finishes starting first)
FIRST_RUN_DELAY = 5.0


class DueScheduler:
    def __init__(
        self,
        provisioner: Provisioner,
        interval: float = DEFAULT_INTERVAL,
        first_delay: float = FIRST_RUN_DELAY,
    ) -> None:
        self.provisioner = provisioner
        self.interval = interval
        self.first_delay = first_delay
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="workflow-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> workflows.DueReport | None:
        try:
            with self.provisioner.transaction() as ctx:
                report = workflows.run_due(ctx)
        except ProvisionerError as exc:
            log.error("workflow scheduler: %s", exc.message, exc_info=exc)
            return None
        except Exception as exc:  # the thread must survive a database outage
            log.error("workflow scheduler failed: %s", exc, exc_info=exc)
            return None
        finally:
            self.runs += 1
        if report.fired or report.errors:
            log.info(
                "workflow scheduler: %d firings in %d tenants, %d errors",
                report.fired,
                report.tenants,
                len(report.errors),
            )
        return report

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay):
            return
        while True:
            self.run_once()
            if self._stop.wait(self.interval):
                return
