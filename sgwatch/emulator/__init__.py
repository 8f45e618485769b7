"""A local Alibaba Cloud ECS API emulator for tests and benchmarks of the live scanner.

``Emulator(...).start()`` serves on 127.0.0.1 in a thread and returns the base URL;
``python -m sgwatch.emulator --snapshot DIR --port N`` runs it standalone.
"""

from sgwatch.emulator.control import ControlError, EmulatorControl
from sgwatch.emulator.estate import Estate
from sgwatch.emulator.server import AccessKey, CallRecord, Emulator, Faults

__all__ = ["AccessKey", "CallRecord", "ControlError", "Emulator", "EmulatorControl", "Estate", "Faults"]
