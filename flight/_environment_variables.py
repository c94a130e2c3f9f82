"""Environment variables read by ``sirius.flight``'s clients: one documented constant each."""

from __future__ import annotations

MICROMEGAS_ANALYTICS_URI = "MICROMEGAS_ANALYTICS_URI"
"""FlightSQL service ``sirius query`` talks to when ``--uri`` is not given (Micromegas's name; the
``micromegas`` client's ``connect_with_profile()`` reads it too). Default ``grpc://127.0.0.1:50051``."""

MICROMEGAS_API_KEY = "MICROMEGAS_API_KEY"
"""Key ``sirius query`` sends as ``Authorization: Bearer <key>`` when ``--api-key`` is not given
(one of the server's ``MICROMEGAS_API_KEYS``)."""

SIRIUS_TLS_CA_FILE = "SIRIUS_TLS_CA_FILE"
"""PEM bundle of the certificate authorities ``sirius query``, the Explore terminal commands and the
gateway trust for a ``grpc+tls://`` FlightSQL service (default: the system's trust store)."""
