"""Stopping a run cleanly on SIGTERM / SIGINT: the loop saves a checkpoint at the next step boundary and exits. A
second signal exits at once (a step can take minutes on a machine too small for the model; checkpoints are whole
or absent, so nothing half-written is left to resume from).

Under `accelerate launch` with one process the launcher does not pass SIGTERM on: it exits 143 at once and the
trainer, re-parented, would train on. `stop_with_launcher` asks the kernel to signal the trainer when its launcher
dies, and that signal counts as a first stop request.
"""

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from accelerate import Accelerator

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
LAUNCHER_GONE = signal.SIGUSR2  # what the kernel sends when the launcher dies; never an immediate exit


class StopRequest:
    """Records SIGTERM / SIGINT while active (a context manager); `requested` tells the loop when to stop."""

    def __init__(self):
        self.signal_number = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT, LAUNCHER_GONE):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame):
        if number == LAUNCHER_GONE:
            logger.warning("the launcher exited: stopping at the end of this step")
            self.signal_number = self.signal_number or signal.SIGTERM  # the launcher was most likely terminated
            return
        if self.signal_number is not None:
            name = signal.Signals(number).name
            sys.stderr.write(f"\n{name} received again: exiting now, without saving a checkpoint.\n")
            sys.stderr.flush()
            os._exit(128 + number)
        self.signal_number = number
        logger.warning(
            "%s received: saving a checkpoint at the end of this step (send it again to exit at once)",
            signal.Signals(number).name,
        )

    def requested(self, accelerator: Accelerator, sync_point: bool) -> bool:
        """Whether to stop now. Several processes must agree, which takes a collective: done at `sync_point` steps
        (the logging steps) only, not every step."""
        if accelerator.num_processes == 1:
            return self.signal_number is not None
        if self.signal_number is not None:
            accelerator.set_trigger()
        return sync_point and accelerator.check_trigger()

    def name(self) -> str:
        """The signal's name; on a process that only learned of another's signal, SIGTERM."""
        return signal.Signals(self.signal_number or signal.SIGTERM).name


def launched_by_accelerate(parent: int) -> bool:
    """Whether process `parent` is `accelerate launch` (read from /proc: Linux only)."""
    try:
        arguments = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(argument.decode(errors="replace")) for argument in arguments]
    return "launch" in names and any(name.startswith("accelerate") for name in names)


def stop_with_launcher() -> bool:
    """With one process under `accelerate launch` (Linux): have the kernel send `LAUNCHER_GONE` when the launcher
    exits, so a SIGTERM sent to the launcher still stops the run cleanly. Returns whether it was set up. Not done
    under torchrun (several processes): its agent passes signals on to the processes itself."""
    parent = os.getppid()
    if not sys.platform.startswith("linux") or "LOCAL_RANK" in os.environ or not launched_by_accelerate(parent):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(LAUNCHER_GONE), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), LAUNCHER_GONE)
    return True
