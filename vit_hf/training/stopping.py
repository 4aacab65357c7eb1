"""Stopping a run cleanly on SIGTERM / SIGINT: the loop saves a checkpoint at the next step boundary and exits."""

import signal

from accelerate import Accelerator


class StopRequest:
    """Records SIGTERM / SIGINT while active (a context manager); `requested` tells the loop when to stop."""

    def __init__(self):
        self.signal_number = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame):
        self.signal_number = number

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
