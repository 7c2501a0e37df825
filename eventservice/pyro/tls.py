"""TLS for every hop, on Pyro5's SSL support.

Pyro5 keeps its SSL settings process-wide and caches the SSL contexts it
builds, so TLS is switched on per process, before any proxy or daemon is made:
the Event Service, each publisher and each subscriber process call
``use_tls`` (``es`` does it for its ``--ssl-*`` options). A subscriber process
serves TLS too (the ES calls it back), so it needs a certificate and key as
well as the CA.
"""
from __future__ import annotations

import logging
import os

from Pyro5 import config as pyro_config

from . import compat

__all__ = ["use_tls"]

log = logging.getLogger(__name__)


def use_tls(
    cacerts: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    require_client_cert: bool = False,
    key_password: str | None = None,
) -> None:
    """Make every Pyro5 connection of this process use TLS.

    :param cacerts: CA certificate file (or directory) that signs the peers' certificates
    :param certfile: this process's certificate: served by its daemons (ES, subscribers,
        name server) and shown as client certificate when ``require_client_cert`` is set
    :param keyfile: the private key of ``certfile`` (None when it is inside ``certfile``)
    :param require_client_cert: daemons of this process accept only clients that show a
        certificate signed by ``cacerts`` (two-way TLS)
    :param key_password: the key's password, if it has one
    Certificates must name the host clients connect to (e.g. an IP SAN for 127.0.0.1).
    """
    for path in filter(None, (cacerts, certfile, keyfile)):
        if not os.path.exists(path):
            raise FileNotFoundError(f"TLS file not found: {path}")
    pyro_config.SSL = True
    pyro_config.SSL_CACERTS = cacerts
    pyro_config.SSL_SERVERCERT = certfile or ""
    pyro_config.SSL_SERVERKEY = keyfile or ""
    pyro_config.SSL_SERVERKEYPASSWD = key_password or ""
    pyro_config.SSL_REQUIRECLIENTCERT = require_client_cert
    show_certificate = require_client_cert and certfile
    pyro_config.SSL_CLIENTCERT = certfile if show_certificate else ""
    pyro_config.SSL_CLIENTKEY = (keyfile or "") if show_certificate else ""
    pyro_config.SSL_CLIENTKEYPASSWD = (key_password or "") if show_certificate else ""
    # Pyro5 builds each context once per process: forget any built with older settings
    compat.reset_ssl_contexts()
    log.info("TLS on: CA %s, certificate %s, client certificates %s",
             cacerts, certfile, "required" if require_client_cert else "not required")
