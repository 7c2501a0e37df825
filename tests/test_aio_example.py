"""examples/stockquotes/aioclient.py: following quotes from asyncio, as a real subprocess."""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import WAIT, read_line

pytestmark = pytest.mark.network


def test_aioclient_follows_s_quotes(es, processes):
    client = processes.spawn("examples/stockquotes/aioclient.py", "--count", "4")
    read_line(client, expect="Subscribed")
    processes.spawn("examples/stockquotes/market.py", "--rate", "100", "--quiet", stdout=subprocess.DEVNULL)
    try:
        out, err = client.communicate(timeout=WAIT * 2)
    except subprocess.TimeoutExpired:
        pytest.fail("aioclient did not end after 4 quotes")
    assert client.returncode == 0, err
    subjects = re.findall(r"\((STOCKQUOTE\.\w+) at ", out)
    assert len(subjects) == 4 and all(subject.startswith("STOCKQUOTE.S") for subject in subjects), out
    assert re.search(r"^Received 4 quotes; the clock ticked \d+ times meanwhile\.$", out, re.M), out
