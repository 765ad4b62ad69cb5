"""Model sync: poll the server for the model to run, download and verify it, swap it in.

A ``ModelSlot`` is one model the agent keeps running: its store on disk (current, previous, rejected) and the
detector loaded from it. ``ModelSync`` polls the server (ETag, ``poll_after_s`` with jitter) and feeds the answer to
its slot, ``live``. The answer's ``shadow`` part (a candidate the robot runs beside the live model and never acts
on) feeds a second slot, ``shadow``, in its own folder: at most one shadow model at a time, downloaded and verified
like the live one; a different shadow replaces it (the old files removed first), and a shadow that disappears from
the answer, or fails to load or to run, is dropped without touching the live slot.

Nothing the server or the disk does stops a slot while it has a working model: a download that is cut resumes with
``Range``; one that is corrupt or fails on the disk (full) is retried at the next poll and then with growing waits;
at start-up the installed file is checked against its sha256 and a damaged one is replaced by the model before it.
"""

import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from agent.api import ApiClient, CorruptDownload, ModelAnswer, NoDeployment, RequestRejected, ServerUnavailable
from agent.detector import Detector, ModelLoadFailed
from agent.modelstore import ModelInfo, ModelStore

logger = logging.getLogger("agent")

Report = Callable[..., None]  # report(event, **details): sent with the next telemetry batch
MAX_DOWNLOAD_WAIT_S = 6 * 3600


class DownloadFailed(Exception):
    """A model could not be downloaded now (corrupt, disk full): reported; the running model stays."""


class DownloadPostponed(DownloadFailed):
    """A model whose download failed before is not tried again until its wait is over."""


def load_detector(path: Path, info: ModelInfo) -> Detector:
    return Detector(path, info.classes, imgsz=info.imgsz)


class ModelSlot:
    """One running model: what is installed on disk and the detector loaded from it.

    ``role`` names the slot in the events it reports (``model_load_failed``, ``shadow_load_failed``, …). A shadow
    slot warms a model up after loading it (a few uncounted runs on a blank frame) so its time is measured warm.
    """

    def __init__(
        self,
        root: Path,
        *,
        report: Report,
        on_activate: Callable[[ModelInfo], None] | None = None,
        role: str = "model",
        live: "ModelSlot | None" = None,
    ):
        self.store = ModelStore(root)
        self.live = live  # for a shadow slot: the live slot, named in the log
        self.report = report
        self.on_activate = on_activate
        self.role = role
        self.active: tuple[Detector | None, ModelInfo | None] = (None, None)  # replaced whole: read without a lock
        self.wanted: str | None = self.store.current.sha256 if self.store.current else None  # the sha256 asked for
        self._failed_downloads: dict[str, tuple[int, float]] = {}  # sha256 → (failures, clock time of next try)
        self.clock = time.monotonic

    @property
    def info(self) -> ModelInfo | None:
        return self.active[1]

    def load_installed(self) -> None:
        """At start, run what was running before (or the model before it, if that one no longer loads)."""
        for info in (self.store.current, self.store.previous):
            if info is None:
                continue
            if not self.store.has_verified(info.sha256):
                logger.error(
                    "installed model %s fails its sha256 check; falling back to the one before it", info.model_id
                )
                self.report(f"installed_{self.role}_corrupt", model_id=info.model_id, sha256=info.sha256)
                self.store.forget(info)
                continue
            try:
                self._activate(self.store.install(info, load_detector), info)
                return
            except ModelLoadFailed as exc:
                logger.error("installed model %s does not load: %s", info.model_id, exc)

    def _activate(self, detector: Detector, info: ModelInfo) -> None:
        if self.role == "shadow":
            warm_up = getattr(detector, "warm_up", None)
            if warm_up is not None:  # measured from its first frame on: not cold (ShadowRunner compares it)
                warm_up()
        self.active = (detector, info)
        if self.role == "shadow":
            live = self.live.info if self.live is not None else None
            logger.info(
                "shadow model %s loaded (sha256 %s…); live stays %s",
                info.model_id,
                info.sha256[:12],
                f"model {live.model_id}" if live is not None else "none yet",
            )
        else:
            logger.info("now running model %s (sha256 %s…)", info.model_id, info.sha256[:12])
        if self.on_activate is not None:
            self.on_activate(info)

    def apply(self, answer: ModelAnswer, client: ApiClient, dataset: str) -> bool:
        """Make the slot run the model of ``answer``: download, verify, load, swap. True when the model changed.

        Raises CorruptDownload and DownloadFailed (both reported), ServerUnavailable and TokenRevoked to the caller.
        """
        self.wanted = answer.sha256
        current = self.info
        if current is not None and answer.sha256 == current.sha256:
            if answer.conf_threshold != current.conf_threshold or answer.classes != current.classes:
                current.conf_threshold, current.classes = answer.conf_threshold, answer.classes
            return False
        if answer.sha256 in self.store.rejected:
            return False  # already reported; wait for the server to change its answer
        info = ModelInfo(
            model_id=answer.model_id,
            sha256=answer.sha256,
            size=answer.size,
            dataset=answer.dataset or dataset,
            version=answer.version,
            classes=answer.classes,
            imgsz=answer.imgsz,
            conf_threshold=answer.conf_threshold,
        )
        downloaded = None
        if not self.store.has_verified(info.sha256):  # e.g. a rollback to the previous model needs no download
            downloaded = self._download(answer, info, client)
        try:
            detector = self.store.install(info, load_detector, downloaded)
        except OSError as exc:  # the disk refused the swap: the running model stays, the next poll tries again
            self.report(f"{self.role}_install_failed", model_id=info.model_id, sha256=info.sha256, error=str(exc)[:300])
            raise DownloadFailed(str(exc)) from exc
        except ModelLoadFailed as exc:
            logger.error("%s %s failed to load (%s); not running it", self.role, info.model_id, exc)
            self.report(f"{self.role}_load_failed", model_id=info.model_id, sha256=info.sha256, error=str(exc)[:300])
            return False
        self._activate(detector, info)
        return True

    def _download(self, answer: ModelAnswer, info: ModelInfo, client: ApiClient) -> Path:
        """Download into the store's part file (a cut one resumes); a failure waits longer each time it repeats."""
        failures, next_try = self._failed_downloads.get(info.sha256, (0, 0.0))
        if self.clock() < next_try:
            raise DownloadPostponed(f"model {info.model_id} failed {failures} time(s); next try in a while")
        logger.info("downloading %s %s (%d bytes)", self.role, info.model_id, info.size)
        try:
            downloaded = client.download(
                answer.url, self.store.part_path(info.sha256), size=info.size, sha256=info.sha256
            )
        except (CorruptDownload, OSError) as exc:
            failures += 1
            # The first retry comes with the next poll, then waits of 1, 3, 7, … poll intervals.
            wait = min(MAX_DOWNLOAD_WAIT_S, answer.poll_after_s * (2 ** (failures - 1) - 1))
            self._failed_downloads[info.sha256] = (failures, self.clock() + wait)
            event = (
                f"{self.role}_download_corrupt" if isinstance(exc, CorruptDownload) else f"{self.role}_download_failed"
            )
            logger.error(
                "%s %s download failed (%s); keeping the current one, retry in %.0fs",
                self.role,
                info.model_id,
                exc,
                wait,
            )
            self.report(event, model_id=info.model_id, sha256=info.sha256, error=str(exc)[:300])
            if isinstance(exc, CorruptDownload):
                raise
            raise DownloadFailed(str(exc)) from exc
        self._failed_downloads.pop(info.sha256, None)
        return downloaded

    def reject(self, info: ModelInfo, reason: str) -> None:
        """Stop running ``info`` (it failed while running) and never load it again; called from the main thread."""
        self.active = (None, None)
        try:
            self.store.reject(info, reason)
        except OSError as exc:  # the slot was dropped meanwhile (its folder removed), or the disk refuses
            logger.warning("could not record %s %s as rejected: %s", self.role, info.model_id, exc)


class ModelSync:
    """Polls the server for the model to run and keeps the ``live`` slot on it, and the ``shadow`` slot (None when
    the server announces no shadow model) on the answer's ``shadow`` part."""

    def __init__(
        self,
        client: ApiClient,
        root: Path,
        dataset: str,
        *,
        report: Report,
        poll_jitter: float = 0.2,
        shadow_root: Path | None = None,
    ):
        self.client = client
        self.dataset = dataset
        self.report = report
        self.poll_jitter = poll_jitter
        self.etag: str | None = None
        self.poll_after_s = 60.0
        self.next_poll = 0.0
        self.unavailable_streak = 0
        self.live = ModelSlot(root, report=report, on_activate=self._announce)
        self.live.load_installed()
        self.shadow_root = Path(shadow_root) if shadow_root is not None else Path(root) / "shadow"
        self.shadow: ModelSlot | None = None  # replaced whole by this thread; the main thread reads it once a frame
        if (self.shadow_root / "state.json").exists():  # what ran before a restart, until the first poll says
            self.shadow = ModelSlot(self.shadow_root, report=report, role="shadow", live=self.live)
            self.shadow.load_installed()

    def _announce(self, info: ModelInfo) -> None:
        self.client.running_model = (info.model_id, info.sha256)  # every request reports the model actually running

    def sync(self) -> bool:
        """Poll once; download, verify and swap in a new model. True when the running model changed.

        Raises ServerUnavailable (also for a malformed answer: ``BadAnswer``), NoDeployment, CorruptDownload,
        DownloadFailed and TokenRevoked to the caller.
        """
        answer = self.client.get_model(self.dataset, self.etag)
        if answer is None:
            return False
        self.poll_after_s = answer.poll_after_s
        changed = self.live.apply(answer, self.client, self.dataset)
        self._follow_shadow(answer)  # raises like the live slot: the ETag is kept only once both are done
        self.etag = answer.etag
        return changed

    def _follow_shadow(self, answer: ModelAnswer) -> None:
        """Make the shadow slot run the answer's shadow model, replace it with a different one, or drop it."""
        if answer.shadow_problem:
            logger.error("the poll answer's shadow part is unusable: %s", answer.shadow_problem)
            self.report("shadow_answer_invalid", error=answer.shadow_problem[:300])
        wanted = answer.shadow
        slot = self.shadow
        if slot is not None and (wanted is None or slot.wanted not in (None, wanted.sha256)):
            self.drop_shadow()
            slot = None
        if wanted is None:
            return
        if slot is None:
            slot = self.shadow = ModelSlot(self.shadow_root, report=self.report, role="shadow", live=self.live)
        slot.apply(wanted, self.client, self.dataset)

    def drop_shadow(self) -> None:
        """Stop running the shadow model and remove its files (downloads in progress included)."""
        slot, self.shadow = self.shadow, None
        if slot is not None and slot.info is not None:
            logger.info("shadow model %s dropped", slot.info.model_id)
        shutil.rmtree(self.shadow_root, ignore_errors=True)

    def poll_if_due(self, now: float, *, force: bool = False) -> None:
        """Poll when due; on failure keep the running model and schedule the next try (backoff when unreachable)."""
        if not force and now < self.next_poll:
            return
        jitter = random.uniform(1 - self.poll_jitter, 1 + self.poll_jitter)
        try:
            self.sync()
            self.unavailable_streak = 0
            self.next_poll = now + self.poll_after_s * jitter
        except ServerUnavailable as exc:
            self.unavailable_streak += 1
            delay = min(self.poll_after_s, 2.0**self.unavailable_streak) * jitter
            logger.warning("server unavailable (%s); keeping the current model, next try in %.0fs", exc, delay)
            self.next_poll = now + delay
        except (NoDeployment, CorruptDownload, DownloadFailed, RequestRejected) as exc:
            if isinstance(exc, NoDeployment):
                logger.info("no model deployed for %s yet", self.dataset)
            self.next_poll = now + self.poll_after_s * jitter
