"""Environment variables read by ``sirius.lakehouse``: one documented constant each (Micromegas names)."""

from __future__ import annotations

MICROMEGAS_SQL_CONNECTION_STRING = "MICROMEGAS_SQL_CONNECTION_STRING"
"""PostgreSQL URI of the data lake and lakehouse metadata."""

MICROMEGAS_OBJECT_STORE_URI = "MICROMEGAS_OBJECT_STORE_URI"
"""Object-store root: ``file:///path`` or ``s3://bucket/prefix``."""

AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
"""S3 endpoint for MinIO or another S3-protocol server (default: AWS)."""

AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
"""S3 access key."""

AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
"""S3 secret key."""

AWS_REGION = "AWS_REGION"
"""S3 region (default ``us-east-1``)."""

MICROMEGAS_RETENTION_DAYS = "MICROMEGAS_RETENTION_DAYS"
"""Days of data kept by the retention pass (default 90)."""

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
