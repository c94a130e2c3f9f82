"""A small package traced by auto_spans in tests/tracing/test_auto_spans.py."""
