"""Without the development stack (an install of the trackflow package, not a checkout), the
commands that need it say so and exit 2; the others, `up` without the demo among them, work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from starters.cli import _parser
from starters.devstack_gate import DevstackMissing, devstack_installed, require_devstack
from starters.embedded import EmbeddedStack
from tests.harness import clean_env
from trackflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def without_devstack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "devstack", None)  # as if it were not on the path


def test_a_checkout_has_the_devstack() -> None:
    assert devstack_installed()
    require_devstack("up --demo")


@pytest.mark.usefixtures("without_devstack")
def test_the_demo_and_the_simulated_providers_need_the_devstack(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(DevstackMissing, match=r"trackflow up --demo needs the development stack"):
        EmbeddedStack(settings, api_port=1, temporal_port=2, ui_port=3, demo=True)
    with pytest.raises(DevstackMissing, match=r"up --providers simulated needs the development"):
        EmbeddedStack(
            settings, api_port=1, temporal_port=2, ui_port=3, demo=False, providers="simulated"
        )
    stack = EmbeddedStack(settings, api_port=1, temporal_port=2, ui_port=3, demo=False)
    assert stack.doubled == ()
    assert stack.providers_port is None


@pytest.mark.usefixtures("without_devstack")
def test_the_cli_parses_without_the_devstack() -> None:
    args = _parser().parse_args(["simulate", "carrier", "--port", "9999"])
    assert args.port == 9999


@pytest.mark.parametrize("command", [["simulate", "carrier"], ["simulate", "providers"]])
def test_a_development_command_without_the_devstack_says_so(command: list[str]) -> None:
    script = (
        "import sys; sys.modules['devstack'] = None\n"
        "from starters.cli import main\n"
        f"main({command!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"trackflow {' '.join(command)} needs the development stack" in done.stderr
    assert "make up" in done.stderr
