"""The development stack (`devstack/`: the demo, the carrier simulator, the provider and ops
doubles) comes with a checkout of the repository, never with the trackflow package. The
commands that use it (`up --demo`, `up --providers simulated`, `simulate ...`) import it only
when they run, after `require_devstack`, which says what to do when it is missing."""

from __future__ import annotations

import importlib.util


class DevstackMissing(RuntimeError):
    """A development command ran where `devstack` cannot be imported."""


def devstack_installed() -> bool:
    return importlib.util.find_spec("devstack") is not None


def require_devstack(command: str) -> None:
    if not devstack_installed():
        raise DevstackMissing(
            f"trackflow {command} needs the development stack (devstack/: the demo, the carrier "
            "simulator, the provider doubles), which the trackflow package does not ship; "
            "run it from a checkout of the repository (make up)"
        )
