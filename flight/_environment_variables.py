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

MICROMEGAS_AUTH_REDIRECT_URI = "MICROMEGAS_AUTH_REDIRECT_URI"
"""Explore sign-in: the callback URL registered at the OIDC issuer (Micromegas's web app reads the
same name); default the gateway's own ``/explore/auth/callback`` as the browser reached it."""

MICROMEGAS_SECURE_COOKIES = "MICROMEGAS_SECURE_COOKIES"
"""Explore sign-in: ``true`` marks the cookies ``Secure`` even when the gateway is reached over plain
HTTP (TLS ends at a proxy); they are always ``Secure`` over HTTPS."""

SIRIUS_SAIL_CLUSTER = "SIRIUS_SAIL_CLUSTER"
"""Spark Connect URL (``sc://127.0.0.1:50071``) of the Sail cluster on which the FlightSQL server runs
statements sent with ``x-sirius-engine: sail`` (read once when the server starts; unset: such
statements are refused). ``sirius.distributed`` names the same variable."""
