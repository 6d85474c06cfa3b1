"""The Web UI queries `up` prints and docs/operations.md lists are valid for the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from starters.web_ui import QUERIES, list_url

OPERATIONS = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()


@pytest.mark.parametrize("name", sorted(QUERIES))
async def test_query_runs_on_the_dev_server_and_is_in_the_docs(client: Client, name: str) -> None:
    count = await client.count_workflows(QUERIES[name])
    assert count.count >= 0
    assert QUERIES[name] in OPERATIONS


def test_list_url_encodes_the_query() -> None:
    url = list_url("http://127.0.0.1:8233/", 'TrackflowStatus = "lost"')
    assert url == (
        "http://127.0.0.1:8233/namespaces/default/workflows"
        "?query=TrackflowStatus%20%3D%20%22lost%22"
    )
