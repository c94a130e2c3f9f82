"""Environment variables read by ``sirius.lakehouse``: one documented constant each (Micromegas names)."""

from __future__ import annotations

MICROMEGAS_SQL_CONNECTION_STRING = "MICROMEGAS_SQL_CONNECTION_STRING"
"""PostgreSQL URI of the data lake and lakehouse metadata."""

MICROMEGAS_OBJECT_STORE_URI = "MICROMEGAS_OBJECT_STORE_URI"
"""Object-store root: ``file:///path``, ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``az://container/prefix``."""

AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
"""S3 endpoint for MinIO or another S3-protocol server (default: AWS)."""

AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
"""S3 access key."""

AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
"""S3 secret key."""

AWS_REGION = "AWS_REGION"
"""S3 region (default ``us-east-1``)."""

AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 - a variable name, not a secret
"""S3 session token of temporary credentials (with the access key)."""

STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"
"""GCS emulator (``http://host:port``), the Google client libraries' convention: no credentials used."""

GOOGLE_APPLICATION_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
"""Path of a GCS service-account JSON file (Application Default Credentials)."""

GOOGLE_SERVICE_ACCOUNT = "GOOGLE_SERVICE_ACCOUNT"
"""Path of a GCS service-account JSON file (``object_store``'s name; wins over the above)."""

GOOGLE_SERVICE_ACCOUNT_KEY = "GOOGLE_SERVICE_ACCOUNT_KEY"
"""A GCS service-account key as JSON text (instead of a file)."""

AZURE_STORAGE_ACCOUNT_NAME = "AZURE_STORAGE_ACCOUNT_NAME"
"""Azure storage account of ``az://`` stores."""

AZURE_STORAGE_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
"""Azure storage account key (shared-key auth)."""

AZURE_STORAGE_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Azure SAS token (``sv=…&sig=…``), instead of the account key."""

AZURE_STORAGE_USE_EMULATOR = "AZURE_STORAGE_USE_EMULATOR"
"""``true``: talk to Azurite (its well-known account and key unless set) over HTTP."""

AZURITE_BLOB_STORAGE_URL = "AZURITE_BLOB_STORAGE_URL"
"""Azurite's blob endpoint (default ``http://127.0.0.1:10000``)."""

MICROMEGAS_RETENTION_DAYS = "MICROMEGAS_RETENTION_DAYS"
"""Days of data kept by the retention pass (default 90)."""

SIRIUS_RETENTION_DAYS_BY_VIEW = "SIRIUS_RETENTION_DAYS_BY_VIEW"
"""Per-view-set retention overriding ``MICROMEGAS_RETENTION_DAYS`` for those views' partitions:
``log_entries=7,measures=365``; raw blocks are kept as long as the longest of all."""

SIRIUS_RETENTION_EXACT = "SIRIUS_RETENTION_EXACT"
"""``1``: retention also row-deletes the expired rows of the ``blocks`` day partition the cutoff falls
in (default ``0``: whole days are dropped once past the cutoff, rows kept up to a day longer)."""

MICROMEGAS_QUERY_DENY_REFRESH_SECONDS = "MICROMEGAS_QUERY_DENY_REFRESH_SECONDS"
"""How often each query service reloads the query deny list (default 10; Micromegas's name)."""

MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS = "MICROMEGAS_VIEW_DEFINITION_REFRESH_SECONDS"
"""How often each service reloads the DDL-defined view sets (default 60; Micromegas's name)."""

MICROMEGAS_QUERY_DENY_MAX_RULES = "MICROMEGAS_QUERY_DENY_MAX_RULES"
"""Most query deny rules in force at once (default 100; Micromegas's name)."""

MICROMEGAS_UNSTAMPED_AUDIENCE = "MICROMEGAS_UNSTAMPED_AUDIENCE"
"""Audience of processes written without one, for audience-restricted readers (default ``public``;
empty: such processes are visible to admins only). Micromegas's name."""

SIRIUS_ICEBERG = "SIRIUS_ICEBERG"
"""``0`` turns off publishing the global views as Iceberg tables in the daemon (default ``1``: on)."""

SIRIUS_ICEBERG_NAMESPACE = "SIRIUS_ICEBERG_NAMESPACE"
"""Iceberg namespace of the published tables (default ``sirius``)."""
