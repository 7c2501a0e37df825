"""The live status page in a real browser: Debian's headless chromium loads ``/`` of a real ``es --http``.

While events flow, chromium renders the page (its scripts run and fetch
api/status), dumps the DOM, and takes screenshots kept as test artifacts
(in $ES_TEST_ARTIFACTS, else a temporary folder; the path is printed).
Without chromium the test skips, saying how to install it; under CI (CI=true)
a missing chromium is a failure, since .ci/install-optional installs it.
"""
from __future__ import annotations

import html.parser
import os
import shutil
import signal
import struct
import subprocess
import threading
from pathlib import Path

import pytest

import eventservice
from conftest import LOCALHOST, WAIT, read_line, wait_until
from test_http import MonitoredES

pytestmark = pytest.mark.network

SUBJECTS = ("STOCKQUOTE.SUN", "STOCKQUOTE.MSFT", "STOCKQUOTE.IBM")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=3000")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing under CI: .ci/install-optional installs it (apt-get install -y chromium)")
    pytest.skip("chromium is not installed: apt-get install -y chromium (or run .ci/install-optional as root)")


def _run_chromium(chromium: str, profile: Path, *args: str) -> str:
    """Run chromium headless with a fresh profile; its stdout. Its whole process group is gone afterwards."""
    process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        output, errors = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within 60 s: {' '.join(args)}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # helpers it may have left behind
        except ProcessLookupError:
            pass
    assert process.returncode == 0, f"chromium failed ({process.returncode}): {errors[-2000:]}"
    return output


class _PageReader(html.parser.HTMLParser):
    """Collects what the page's scripts rendered: element data by id, subject rows and their rates."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.subject_rates: dict[str, float] = {}
        self.texts: dict[str, str] = {}
        self._subject: str | None = None
        self._text_of: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = attributes
            self._text_of = str(attributes["id"])
        if tag == "tr" and attributes.get("data-subject"):
            self._subject = attributes["data-subject"]
        if tag == "td" and self._subject and attributes.get("data-rate") is not None:
            self.subject_rates[self._subject] = float(attributes["data-rate"] or 0)
            self._subject = None

    def handle_data(self, data: str) -> None:
        if self._text_of is not None and data.strip():
            self.texts[self._text_of] = data.strip()
            self._text_of = None


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("ES_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_status_page_in_headless_chromium(processes, collectors, tmp_path, artifacts, capsys):
    chromium = _chromium()
    process = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--http", "127.0.0.1:0")
    uri = read_line(process, expect="Event Service URI").split(": ", 1)[1].strip()
    es = MonitoredES(process, uri, read_line(process, expect="Monitoring").split(": ", 1)[1].strip())
    quotes = collectors(esURI=uri)
    quotes.subscribeMatch(r"^STOCKQUOTE\.")

    stop = threading.Event()

    def market() -> None:  # about 300 publishes a second, for at most two minutes
        with eventservice.Publisher(esURI=uri) as publisher:
            for _ in range(12000):
                if stop.wait(0.01):
                    return
                for subject in SUBJECTS:
                    publisher.publish(subject, ("quote", 12.5))

    flowing = threading.Thread(target=market, name="test-market", daemon=True)
    flowing.start()
    try:
        def rates_visible() -> bool:
            status = es.json("/api/status")
            return bool(status["history"]) and status["history"][-1][1] > 0 and len(status["subjects"]) == 3

        wait_until(rates_visible, timeout=WAIT, interval=0.2, message="rates of the three subjects in api/status")

        page = _PageReader()
        page.feed(_run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", es.url))
        phone = artifacts / "status-page-phone.png"
        desktop = artifacts / "status-page-desktop.png"
        _run_chromium(chromium, tmp_path / "profile-phone", "--window-size=412,1400", f"--screenshot={phone}", es.url)
        _run_chromium(chromium, tmp_path / "profile-desktop", "--window-size=1280,1000", f"--screenshot={desktop}", es.url)
    finally:
        stop.set()
        flowing.join(WAIT)

    # the scripts ran: they filled in the live figures and the busiest subjects from api/status
    assert page.texts.get("state") == "live"
    assert float(page.by_id["pub-rate"]["data-value"] or 0) > 0
    assert float(page.by_id["del-rate"]["data-value"] or 0) > 0
    assert page.texts.get("uri") == uri
    assert set(page.subject_rates) == set(SUBJECTS)
    assert all(rate > 0 for rate in page.subject_rates.values())
    assert _png_size(phone) == (412, 1400) and _png_size(desktop) == (1280, 1000)
    assert phone.stat().st_size > 10_000  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\nstatus page screenshots: {phone} {desktop}")


def test_status_page_with_a_token_passes_it_on(processes, tmp_path):
    """Opened as /?token=..., the page's own requests carry the token; without it the page is refused."""
    chromium = _chromium()
    process = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--http", "127.0.0.1:0",
                              "--http-token", "page-token")
    uri = read_line(process, expect="Event Service URI").split(": ", 1)[1].strip()
    url = read_line(process, expect="Monitoring").split(": ", 1)[1].strip()
    page = _PageReader()
    page.feed(_run_chromium(chromium, tmp_path / "profile-token", "--dump-dom", url + "?token=page-token"))
    assert page.texts.get("state") == "live" and page.texts.get("uri") == uri
    refused = _PageReader()
    refused.feed(_run_chromium(chromium, tmp_path / "profile-none", "--dump-dom", url))
    assert "state" not in refused.by_id  # the 401 text, not the page
