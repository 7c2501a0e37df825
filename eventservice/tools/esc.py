"""The ``esc`` command: publish, watch, inspect and ping a running Event Service.

    esc publish SUBJECT [VALUE ...]       values as Python literals (else strings); several make a tuple
    esc tail [--match PATTERN ...] [SUBJECT ...] [--count N] [--timeout S] [--json]
    esc stats [--json]                    the ES's figures
    esc list [--json]                     its subscribers (when the ES offers subscribers())
    esc ping [-c N]                       does it answer, and how fast

Every problem ends in one line on stderr and an exit code (see EXIT_* and
``esc -h``), never a traceback. esc is built on the client skeletons only.
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import logging
import os
import queue
import sys
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import errors

from ..client import Publisher, QueueSubscriber
from ..core.event import Event
from ..pyro.auth import Authenticator, PassphraseError
from ..pyro.naming import locate_ns
from ..pyro.tls import use_tls

__all__ = ["main"]

EXIT_OK = 0  # done; also tail and ping ended by Ctrl-C, --count or --timeout
EXIT_FAILED = 1  # anything not listed below (lost connection, an error the ES reported)
EXIT_USAGE = 2  # bad command line: unknown option, bad pattern or subject, a value that cannot be published
EXIT_NO_NAMESERVER = 3  # no name server answers
EXIT_NO_ES = 4  # no Event Service registered in the name server, or none answers at --uri
EXIT_PASSPHRASE = 5  # the passphrase was refused (wrong or missing)
EXIT_NO_LISTING = 6  # esc list: this Event Service offers no subscriber listing
EXIT_INTERRUPTED = 130  # Ctrl-C stopped publish, stats or list before they were done

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done (tail and ping also when stopped by Ctrl-C, --count or --timeout)
  {EXIT_FAILED}    other failure (lost connection, an error the Event Service reported)
  {EXIT_USAGE}    bad command line: unknown option, bad pattern or subject, value that cannot be published
  {EXIT_NO_NAMESERVER}    no name server answers
  {EXIT_NO_ES}    no Event Service registered in the name server, or none answers at --uri
  {EXIT_PASSPHRASE}    passphrase refused
  {EXIT_NO_LISTING}    esc list: this Event Service offers no subscriber listing
  {EXIT_INTERRUPTED}  Ctrl-C stopped publish, stats or list before they were done

environment: Pyro5's PYRO_* settings apply as for es (PYRO_NS_HOST, PYRO_NS_PORT, PYRO_HOST,
PYRO_SERIALIZER, PYRO_SSL_*); EVENTSERVICE_* settings tune the Event Service itself, which
reports its limits to esc."""

#: the columns of ``esc list``, in the order of the subscribers() contract; other keys follow
LIST_COLUMNS = ("uri", "subjects", "patterns", "queued", "queuesize", "policy", "delivered", "dropped", "last_delivery")


class EscError(Exception):
    """A problem esc reports in one line, with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- options -----------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (as for es)")
    group.add_argument("--ns-host", help="name server host (default: Pyro5's NS_HOST)")
    group.add_argument("--ns-port", type=int, help="name server port (default: Pyro5's NS_PORT, 9090)")
    group.add_argument("--uri", help="the Event Service's URI; no name server is used (PYRO:Pyro.EventService@HOST:PORT)")
    group.add_argument("-i", "--ident", help="passphrase the Event Service requires")
    group.add_argument("--ident-file", help="read the passphrase from the first line of this file (keeps it out of ps)")
    group.add_argument("--ssl-cert", help="TLS: this client's certificate (tail serves TLS and needs it)")
    group.add_argument("--ssl-key", help="TLS: the certificate's private key")
    group.add_argument("--ssl-ca", help="TLS: CA certificate that signs the Event Service's certificate")
    group.add_argument("--ssl-require-client-cert", action="store_true",
                       help="TLS: show --ssl-cert to the Event Service and require one from callers (two-way TLS)")
    return common


def _parser() -> argparse.ArgumentParser:
    common = _connection_options()
    parser = argparse.ArgumentParser(
        prog="esc", description="Event Service control: publish, watch, inspect and ping a running Event Service.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    publish = commands.add_parser("publish", parents=[common], help="publish one event",
                                  description="Publish one event. Each VALUE is a Python literal ('(\"SUN\", 22.5)', 42, "
                                              "None) or else a string; several VALUEs make one tuple; none publishes None.")
    publish.add_argument("subject")
    publish.add_argument("values", nargs="*", metavar="VALUE")
    publish.add_argument("--json", action="store_true", help="each VALUE is JSON instead of a Python literal")

    tail = commands.add_parser("tail", parents=[common], help="print live events",
                               description="Print live events, one line each: time, subject, message. "
                                           "With no SUBJECT and no --match, follows everything (--match .).")
    tail.add_argument("subjects", nargs="*", metavar="SUBJECT", help="exact subjects (case-insensitive)")
    tail.add_argument("-m", "--match", action="append", default=[], metavar="PATTERN",
                      help="regex pattern, matched from the subject's start (repeatable)")
    tail.add_argument("-c", "--count", type=_positive_int, help="stop after N events")
    tail.add_argument("-t", "--timeout", type=_positive_float, help="stop after S seconds")
    tail.add_argument("--json", action="store_true", help="one JSON object a line: time, subject, msg")
    tail.add_argument("--full-queue", choices=("drop-oldest", "drop", "block"), default="drop-oldest",
                      help="what the Event Service does when this tail falls behind (default drop-oldest: it "
                           "loses old events and says how many at the end; block slows the publishers instead)")
    tail.add_argument("-n", "--host", help="interface for the callbacks from the Event Service (default: Pyro5's HOST)")

    stats = commands.add_parser("stats", parents=[common], help="show the Event Service's figures")
    stats.add_argument("--json", action="store_true", help="machine-readable output")

    listing = commands.add_parser("list", parents=[common], help="show the subscribers and their subscriptions")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    ping = commands.add_parser("ping", parents=[common], help="check that the Event Service answers, and how fast")
    ping.add_argument("-c", "--count", type=_whole_number, default=1, help="pings to send (default 1; 0: until Ctrl-C)")
    ping.add_argument("--interval", type=_positive_float, default=0.2, help="seconds between pings (default 0.2)")
    ping.add_argument("-t", "--timeout", type=_positive_float, default=5.0, help="seconds to wait for an answer (default 5)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; a command's options and arguments may come in any order (``publish S --json V``)."""
    parser = _parser()
    if argv and argv[0] in COMMANDS:
        commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        options = commands.choices[argv[0]].parse_intermixed_args(argv[1:])
        options.command = argv[0]
        return options
    return parser.parse_args(argv)  # help, or the error that names what is wrong


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0: {text}")
    return value


def _prepare(options: argparse.Namespace) -> None:
    """Passphrase file, TLS and callback host, before anything connects."""
    if options.ident_file:
        try:
            with open(options.ident_file, encoding="utf-8") as file:
                options.ident = file.readline().rstrip("\r\n")
        except OSError as error:
            raise EscError(EXIT_USAGE, f"cannot read --ident-file: {error}")
    if options.ident == "":
        raise EscError(EXIT_USAGE, "the passphrase is empty")
    if options.ssl_cert or options.ssl_key or options.ssl_ca or options.ssl_require_client_cert:
        if not options.ssl_ca:
            raise EscError(EXIT_USAGE, "TLS needs --ssl-ca (the CA that signs the Event Service's certificate)")
        if options.command == "tail" and not options.ssl_cert:
            raise EscError(EXIT_USAGE, "esc tail over TLS needs --ssl-cert and --ssl-key: the Event Service calls it back")
        try:
            use_tls(options.ssl_ca, options.ssl_cert, options.ssl_key, options.ssl_require_client_cert)
        except OSError as error:
            raise EscError(EXIT_USAGE, str(error))
    if getattr(options, "host", None):
        pyro_config.HOST = options.host


# -- reaching the Event Service ----------------------------------------------

_C = t.TypeVar("_C")


def _open(options: argparse.Namespace, make: t.Callable[..., _C]) -> _C:
    """``make(ident=..., esURI=..., nsHost=..., nsPort=...)``, its failures turned into EscError."""
    try:
        return make(ident=options.ident, esURI=options.uri, nsHost=options.ns_host, nsPort=options.ns_port)
    except PassphraseError as error:
        raise _passphrase_failure(error)
    except errors.NamingError:
        raise _naming_failure(options)
    except errors.CommunicationError as error:
        where = options.uri or "the URI registered in the name server"
        raise EscError(EXIT_NO_ES, f"no Event Service answers at {where}: {error}")


def _passphrase_failure(error: PassphraseError) -> EscError:
    return EscError(EXIT_PASSPHRASE, f"{error}; give the Event Service's passphrase with -i/--ident or --ident-file")


def _naming_failure(options: argparse.Namespace) -> EscError:
    """Which it was: no name server, or no Event Service in it."""
    host, port = options.ns_host or pyro_config.NS_HOST, options.ns_port or pyro_config.NS_PORT
    try:
        authenticator = Authenticator(options.ident) if options.ident else None
        locate_ns(options.ns_host, options.ns_port, authenticator)._pyroRelease()
    except errors.NamingError:
        return EscError(EXIT_NO_NAMESERVER, f"no name server answers at {host}:{port}; start one ('es --ns' starts "
                                           "both), give --ns-host/--ns-port, or reach the Event Service with --uri")
    except PassphraseError as error:
        return _passphrase_failure(error)
    return EscError(EXIT_NO_ES, f"no Event Service is registered in the name server at {host}:{port}; start one with 'es'")


def _es_proxy(options: argparse.Namespace, timeout: float | None = None) -> t.Any:
    """A connected proxy to the ES (for stats, list, ping), with the passphrase proven."""
    publisher = _open(options, Publisher)
    try:
        es = publisher.getES()
    finally:
        publisher.close()
    es._pyroTimeout = timeout
    try:
        es._pyroBind()
    except PassphraseError as error:
        raise _passphrase_failure(error)
    return es


# -- publish -----------------------------------------------------------------


def parse_value(text: str, as_json: bool = False) -> t.Any:
    """A command-line VALUE: JSON with ``as_json``, else a Python literal, else the text itself."""
    if as_json:
        try:
            return json.loads(text)
        except ValueError as error:
            raise EscError(EXIT_USAGE, f"not valid JSON: {text!r}: {error}")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _publish(options: argparse.Namespace) -> int:
    values = [parse_value(text, options.json) for text in options.values]
    message = None if not values else values[0] if len(values) == 1 else tuple(values)
    publisher = _open(options, Publisher)
    try:
        queued = publisher.publish(options.subject, message)
    except (TypeError, ValueError) as error:
        raise EscError(EXIT_USAGE, f"cannot publish {message!r:.80} under {options.subject!r:.80}: {error}")
    finally:
        publisher.close()
    print(f"published {options.subject} {message!r}: queued for {queued} subscriber{'s' if queued != 1 else ''}")
    return EXIT_OK


# -- tail --------------------------------------------------------------------


def format_event(event: Event, as_json: bool = False) -> str:
    """One output line of ``esc tail``."""
    if as_json:
        return json.dumps({"time": event.time, "subject": event.subject, "msg": event.msg}, default=repr, ensure_ascii=False)
    seconds, millis = divmod(round(event.time * 1000), 1000)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(seconds))}.{millis:03d}  {event.subject}  {event.msg!r}"


def _tail(options: argparse.Namespace) -> int:
    subjects, patterns = options.subjects, options.match
    if not subjects and not patterns:
        patterns = ["."]
        _say("no subject or pattern given: following every subject (--match .)")
    sub = _open(options, functools.partial(QueueSubscriber, queuePolicy=options.full_queue))
    try:
        for kind, texts, method in (("subject", subjects, sub.subscribe), ("pattern", patterns, sub.subscribeMatch)):
            if texts:
                try:
                    method(texts)
                except (TypeError, ValueError) as error:
                    raise EscError(EXIT_USAGE, f"bad {kind}: {error}")
                except PassphraseError as error:
                    raise _passphrase_failure(error)
        what = ", ".join([*subjects, *(f"/{pattern}/" for pattern in patterns)])
        _say(f"following {what}; Ctrl-C stops")
        deadline = None if options.timeout is None else time.monotonic() + options.timeout
        seen = 0
        while options.count is None or seen < options.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                event = sub.get(timeout=remaining)
            except queue.Empty:
                break
            print(format_event(event, options.json), flush=True)
            seen += 1
        try:
            dropped = sub.dropped_events()
        except errors.PyroError:
            dropped = 0  # the ES went away meanwhile: nothing to tell
        if dropped:
            _say(f"the Event Service dropped {dropped:,} events for this tail, which fell behind "
                 f"(--full-queue {options.full_queue}; --full-queue block slows the publishers instead)")
    finally:
        sub.close()
    return EXIT_OK



# -- stats and list ----------------------------------------------------------


def _number(value: t.Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.3f}"


def render_mapping(mapping: t.Mapping[str, t.Any], indent: str = "") -> list[str]:
    """Rows of ``name  value``; nested mappings become indented sections under their name."""
    lines: list[str] = []
    plain = [(str(name), value) for name, value in mapping.items() if not isinstance(value, t.Mapping)]
    if plain:
        names = max(len(name) for name, _ in plain)
        values = max(len(_number(value)) for _, value in plain)
        lines.extend(f"{indent}{name:<{names}}  {_number(value):>{values}}" for name, value in plain)
    for name, value in mapping.items():
        if isinstance(value, t.Mapping):
            lines.append(f"{indent}{name}:")
            lines.extend(render_mapping(value, indent + "  "))
    return lines


def _stats(options: argparse.Namespace) -> int:
    es = _es_proxy(options)
    with es:
        figures = es.stats()
    if options.json:
        print(json.dumps(figures, indent=2, default=repr))
    else:
        print("\n".join(render_mapping(figures)))
    return EXIT_OK


def render_table(rows: list[dict[str, t.Any]], now: float | None = None) -> list[str]:
    """The subscribers as a table: the contract's columns first, then any others the ES adds."""
    now = time.time() if now is None else now
    columns = [name for name in LIST_COLUMNS if any(name in row for row in rows)]
    columns += sorted({name for row in rows for name in row} - set(columns))

    def cell(name: str, value: t.Any) -> str:
        if name == "last_delivery":
            return "-" if value is None else f"{max(0.0, now - value):.1f}s ago"
        return _number(value)

    table = [[name.upper().replace("_", " ") for name in columns]]
    table += [[cell(name, row.get(name, "")) for name in columns] for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    return ["  ".join(text.ljust(width) if index == 0 else text.rjust(width)
                      for index, (text, width) in enumerate(zip(line, widths, strict=True))).rstrip() for line in table]


def _list(options: argparse.Namespace) -> int:
    es = _es_proxy(options)
    with es:
        methods = es._pyroMethods
        if methods and "subscribers" not in methods:
            raise _no_listing()
        try:
            rows = es.subscribers()
        except AttributeError:  # an ES whose metadata was off and that has no subscribers()
            raise _no_listing()
    rows = sorted(rows, key=lambda row: str(row.get("uri", "")))
    if options.json:
        print(json.dumps(rows, indent=2, default=repr))
    elif not rows:
        print("no subscribers")
    else:
        print("\n".join(render_table(rows)))
        print(f"{len(rows)} subscriber{'s' if len(rows) != 1 else ''}")
    return EXIT_OK


def _no_listing() -> EscError:
    return EscError(EXIT_NO_LISTING, "this Event Service does not offer a subscriber listing (no subscribers() method); "
                                    "esc stats shows its totals")


# -- ping --------------------------------------------------------------------


def _ping(options: argparse.Namespace) -> int:
    es = _es_proxy(options, options.timeout)
    uri = es._pyroUri
    times: list[float] = []
    try:
        with es:
            while True:
                start = time.perf_counter()
                try:
                    es.ping()
                except errors.TimeoutError:
                    raise EscError(EXIT_NO_ES, f"no answer from {uri} within {options.timeout:g}s")
                except errors.CommunicationError as error:
                    raise EscError(EXIT_NO_ES, f"no answer from {uri}: {error}")
                times.append(time.perf_counter() - start)
                print(f"answer from {uri}: seq={len(times)} time={times[-1] * 1000:.2f} ms", flush=True)
                if options.count and len(times) >= options.count:
                    break
                time.sleep(options.interval)
    except KeyboardInterrupt:
        pass
    if times:
        print(f"{len(times)} ping{'s' if len(times) != 1 else ''}: min/avg/max = {min(times) * 1000:.2f}/"
              f"{sum(times) / len(times) * 1000:.2f}/{max(times) * 1000:.2f} ms")
    return EXIT_OK


# -- main --------------------------------------------------------------------

COMMANDS: dict[str, t.Callable[[argparse.Namespace], int]] = {
    "publish": _publish, "tail": _tail, "stats": _stats, "list": _list, "ping": _ping,
}
#: commands for which Ctrl-C is the normal way to stop
STOPPED_BY_CTRL_C = frozenset({"tail", "ping"})


def _say(text: str) -> None:
    print(f"esc: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The ``esc`` command; returns the exit code (see EXIT_CODES)."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="esc: %(levelname)s: %(message)s")
    command = options.command
    try:
        _prepare(options)
        return COMMANDS[command](options)
    except EscError as failure:
        code, text = failure.code, str(failure)
    except KeyboardInterrupt:
        return EXIT_OK if command in STOPPED_BY_CTRL_C else EXIT_INTERRUPTED
    except BrokenPipeError:  # esc tail | head: the reader is gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except PassphraseError as error:
        code, text = EXIT_PASSPHRASE, str(_passphrase_failure(error))
    except errors.CommunicationError as error:
        code, text = EXIT_FAILED, f"lost the connection to the Event Service: {error}"
    except Exception as error:  # one line, never a traceback
        code, text = EXIT_FAILED, f"{type(error).__name__}: {error}"
    print(f"esc {command}: {' '.join(text.split())}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
