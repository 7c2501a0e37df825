"""Offline tests of the ``es`` command line: option parsing and refusals; nothing is started."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventservice.server import cli as server


def test_help_exits_zero_and_lists_options(capsys):
    """`es -h` exits 0 and documents -n, -p, -N, -i, --ns, --queuesize and --full-queue."""
    with pytest.raises(SystemExit) as exit_info:
        server.main(["-h"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: es")
    for option in ("-n", "-p", "-N", "-i", "--ns", "--queuesize", "--full-queue"):
        assert f"{option} " in usage or f"{option}," in usage or f"[{option}" in usage, option
    assert "block" in usage and "drop" in usage


def test_unknown_option_exits_two(capsys):
    """An unknown option exits with status 2 and names it on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        server.main(["--bogus"])
    assert exit_info.value.code == 2
    assert "--bogus" in capsys.readouterr().err


def test_invalid_full_queue_choice_exits_two(capsys):
    """--full-queue accepts only block, drop or drop-oldest."""
    with pytest.raises(SystemExit) as exit_info:
        server.main(["--full-queue", "sometimes"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "sometimes" in error and "block" in error


@pytest.mark.parametrize("args", [["--queuesize", "many"], ["-p", "http"], ["--connectors", "1.5"]])
def test_non_numeric_values_exit_two(capsys, args):
    """Numeric options refuse text that is not a number, with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        server.main(args)
    assert exit_info.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_parser_maps_options_to_settings_names():
    """The parser stores the options under the names main() hands to the starter and settings."""
    options = server._parser().parse_args(["-n", "10.0.0.1", "-p", "7766", "-N", "-i", "pw", "--ns",
                                           "--queuesize", "5", "--full-queue", "drop", "--connectors", "3",
                                           "--linger", "0"])
    assert (options.hostname, options.port, options.use_ns, options.identification) == ("10.0.0.1", 7766, False, "pw")
    assert (options.embedded_ns, options.queuesize, options.full_queue, options.connectors) == (True, 5, "drop", 3)
    assert options.linger == 0
    defaults = server._parser().parse_args([])
    assert (defaults.hostname, defaults.port, defaults.use_ns, defaults.embedded_ns) == ("", 0, True, False)
    assert (defaults.identification, defaults.queuesize, defaults.full_queue) == (None, None, None)


def test_invalid_setting_reports_and_returns_one(capsys):
    """A setting refused by the settings validation makes main() print 'cannot start' and return 1."""
    assert server.main(["--queuesize", "0", "-N"]) == 1
    err = capsys.readouterr().err
    assert "cannot start" in err and "queuesize" in err
    assert server.main(["--linger", "-1", "-N"]) == 1
    assert "linger" in capsys.readouterr().err


def test_full_queue_lists_drop_oldest(capsys):
    """es -h offers drop-oldest and --max-queuesize."""
    with pytest.raises(SystemExit):
        server.main(["-h"])
    usage = capsys.readouterr().out
    assert "drop-oldest" in usage and "--max-queuesize" in usage
def test_unknown_environment_name_is_one_line_and_status_one():
    """`es` with a misspelt EVENTSERVICE_* variable says so in one line (naming the known ones) and exits 1."""
    es = Path(__file__).resolve().parent.parent / "bin" / "es"
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTSERVICE_")}
    env["EVENTSERVICE_QUEUSIZE"] = "5"
    done = subprocess.run([sys.executable, str(es), "-N", "-n", "127.0.0.1"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("es: cannot start: unknown environment variable EVENTSERVICE_QUEUSIZE;")
    assert "EVENTSERVICE_QUEUESIZE" in line


def test_secret_files_that_cannot_be_used_are_refused_by_option_name(capsys, tmp_path):
    """--ident-file, --http-token-file, --backbone-password-file: a missing or empty file is one line naming the
    option, status 1, no traceback; nothing is started."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    missing = str(tmp_path / "missing")
    cases = [
        (["--ident-file", missing], "cannot read --ident-file"),
        (["--ident-file", str(empty)], "--ident-file " + str(empty) + " holds no passphrase"),
        (["--http", "0", "--http-token-file", missing], "cannot read --http-token-file"),
        (["--backbone", "redis://127.0.0.1:1", "--backbone-password-file", str(empty)], "holds no password"),
    ]
    for args, expected in cases:
        assert server.main([*args, "-N", "-n", "127.0.0.1"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("es: cannot start:") and expected in err and "Traceback" not in err, (args, err)
