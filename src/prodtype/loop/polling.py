"""A background thread that calls ``check_now`` every few seconds, or at once when woken: how a serving
process follows what is recorded elsewhere (the champion, the version in shadow)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Poller:
    """Subclasses define :meth:`check_now` and :meth:`interval` (seconds between checks); an error of one
    check is kept in :attr:`last_error` and logged, and the next poll tries again (a registry or database
    briefly unreachable must not stop the thread)."""

    name = "poller"  # the thread's name, and what the log says could not be followed
    following = "it"

    def __init__(self) -> None:
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> bool:
        raise NotImplementedError

    def interval(self) -> float:
        raise NotImplementedError

    def check_logged(self) -> None:
        """One check; its error is kept and logged, never raised."""
        try:
            self.check_now()
            self.last_error = None
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not follow %s: %s", self.following, exc)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_logged()
            self._wake.wait(self.interval())
            self._wake.clear()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
