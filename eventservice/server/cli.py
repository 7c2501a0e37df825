"""The ``es`` command: parse options, start an Event Service, serve until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import typing as t

from Pyro5 import errors

from ..core.config import from_environment
from ..core.queues import POLICIES
from ..pyro.tls import use_tls
from .starter import EventServiceStarter

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="es",
        description="Start the Pyro Event Service (publish/subscribe on Pyro5).",
        epilog="Settings also come from EVENTSERVICE_<NAME> environment variables; "
               "Pyro5's PYRO_* settings apply too.",
    )
    parser.add_argument("-n", "--host", dest="hostname", default="",
                        help="hostname or IP to bind (default: Pyro5's HOST, localhost)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind (default: any free port)")
    parser.add_argument("-N", "--no-nameserver", dest="use_ns", action="store_false",
                        help="do not use a name server (clients then need the printed URI)")
    parser.add_argument("-i", "--ident", dest="identification", help="passphrase every client must prove")
    parser.add_argument("--ident-file", help="read the passphrase from the first line of this file (keeps it out of ps)")
    parser.add_argument("--ns", dest="embedded_ns", action="store_true",
                        help="run a name server inside this process (one command on a bare machine)")
    parser.add_argument("--ns-host", help="name server host (default: Pyro5's NS_HOST, or --host with --ns)")
    parser.add_argument("--ns-port", type=int, help="name server port (default: Pyro5's NS_PORT, 9090)")
    parser.add_argument("--queuesize", type=int, help="events queued per subscriber (default 1000)")
    parser.add_argument("--full-queue", choices=POLICIES,
                        help="when a subscriber's queue is full: block the publisher (default), drop the new event, "
                             "or drop the oldest queued one")
    parser.add_argument("--max-queuesize", type=int,
                        help="largest queue size a subscriber may ask for with setQueuePolicy (default 10000)")
    parser.add_argument("--connectors", type=int, help="most threads connecting to new subscribers at once (default 64)")
    parser.add_argument("--linger", type=float, help="under load, seconds between deliveries to a subscriber, "
                        "so batches grow (default 0.005; 0: off)")
    parser.add_argument("--delivery-timeout", type=float,
                        help="seconds before an unresponsive subscriber is dropped (default 30)")
    parser.add_argument("--max-connections", type=int, help="concurrent client connections (default 1000)")
    parser.add_argument("--idle-timeout", type=float, help="seconds before a silent client connection is closed (default 60)")
    parser.add_argument("--max-message-size", type=int, help="largest publish request in bytes (default 10 MiB)")
    parser.add_argument("--pattern-timeout", type=float, help="seconds all patterns may take on one subject (default 0.1)")
    parser.add_argument("--max-subject-length", type=int, help="longest subject in characters (default 1000)")
    parser.add_argument("--max-pattern-length", type=int, help="longest pattern in characters (default 1000)")
    parser.add_argument("--max-subscriptions", type=int, help="most subjects plus patterns per subscriber (default 10000)")
    parser.add_argument("--max-subjects-per-publish", type=int, help="most subjects in one publish (default 1000)")
    parser.add_argument("--stats-interval", type=float,
                        help="log a one-line summary of the ES's figures every S seconds (default 0: off)")
    parser.add_argument("--ssl-cert", help="TLS: this server's certificate (turns TLS on for every connection)")
    parser.add_argument("--ssl-key", help="TLS: the certificate's private key")
    parser.add_argument("--ssl-ca", help="TLS: CA certificate that signs clients' and subscribers' certificates")
    parser.add_argument("--ssl-require-client-cert", action="store_true",
                        help="TLS: accept only clients with a certificate signed by --ssl-ca (two-way TLS)")
    parser.add_argument("--http", metavar="[HOST:]PORT",
                        help="serve monitoring (status page, /stats, /subscribers, /metrics) there; host 127.0.0.1 by default")
    parser.add_argument("--http-token", help="token the monitoring endpoint requires (Authorization: Bearer, or ?token=)")
    parser.add_argument("--http-token-file", help="read that token from the first line of this file (keeps it out of ps)")
    parser.add_argument("--backbone", metavar="URLS",
                        help="share subjects with other Event Services over Redis: redis://HOST:PORT[/DB] or rediss:// "
                             "(TLS), comma-separated for several independent Redis instances (needs eventservice[redis])")
    parser.add_argument("--backbone-password-file", metavar="FILE",
                        help="read the Redis password from the first line of this file (keeps it out of ps)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (default WARNING)")
    return parser


def _first_line(path: str, option: str, what: str) -> str:
    """The secret on the first line of ``path``; ValueError naming the option if it cannot be read or is empty."""
    try:
        with open(path, encoding="utf-8") as file:
            line = file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {option} {path}: {error}") from None
    if not line:
        raise ValueError(f"{option} {path} holds no {what} on its first line")
    return line


def main(args: list[str] | None = None) -> int:
    """The ``es`` command: parse options, start, print the URI, serve until Ctrl-C or SIGTERM."""
    options = _parser().parse_args(args)
    logging.basicConfig(level=logging.INFO if options.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        identification = options.identification
        if options.ident_file:
            identification = _first_line(options.ident_file, "--ident-file", "passphrase")
        http_token = options.http_token
        if options.http_token_file:
            http_token = _first_line(options.http_token_file, "--http-token-file", "token")
        if options.ssl_cert or options.ssl_ca:
            if not (options.ssl_cert and options.ssl_ca):
                raise ValueError("TLS needs both --ssl-cert and --ssl-ca")
            use_tls(options.ssl_ca, options.ssl_cert, options.ssl_key, options.ssl_require_client_cert)
        settings = from_environment(
            queuesize=options.queuesize,
            full_queue=options.full_queue,
            max_queuesize=options.max_queuesize,
            connectors=options.connectors,
            linger=options.linger,
            delivery_timeout=options.delivery_timeout,
            max_connections=options.max_connections,
            idle_timeout=options.idle_timeout,
            max_message_size=options.max_message_size,
            pattern_timeout=options.pattern_timeout,
            max_subject_length=options.max_subject_length,
            max_pattern_length=options.max_pattern_length,
            max_subscriptions=options.max_subscriptions,
            max_subjects_per_publish=options.max_subjects_per_publish,
            stats_interval=options.stats_interval,
            http=options.http,
            http_token=http_token,
        )
        if settings.stats_interval:  # the summary is the point of the option: show it without -v
            logging.getLogger("eventservice.server.statslog").setLevel(logging.INFO)
        if settings.http_token and not settings.http:
            raise ValueError("a token for the monitoring endpoint (--http-token) needs --http [HOST:]PORT")
        backbone_password = None
        if options.backbone_password_file:
            if not options.backbone:
                raise ValueError("--backbone-password-file needs --backbone")
            backbone_password = _first_line(options.backbone_password_file, "--backbone-password-file", "password")
        starter = EventServiceStarter(identification, settings, options.backbone, backbone_password)
        uri = starter.initialize(options.hostname, options.port, options.use_ns, options.embedded_ns,
                                 options.ns_host, options.ns_port)
    except (ValueError, OSError, ImportError, errors.PyroError) as error:
        print(f"es: cannot start: {error}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: t.Any) -> None:
        starter.shutdown()

    previous = signal.signal(signal.SIGTERM, stop)  # before the URI is out: whoever reads it may stop us at once
    try:
        if starter.nsUri is not None:
            print(f"Name server URI: {starter.nsUri}")
        print(f"Event Service URI: {uri}")
        if starter.monitor is not None:
            print(f"Monitoring: {starter.monitor.url}")
        print("Event Service running; Ctrl-C or SIGTERM stops it.", flush=True)
        starter.handleRequests()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        starter.shutdown()
    print("Event Service stopped.", flush=True)
    return 0
