"""``pair_spans`` against a stack that pairs events one by one, on arbitrary begin/end sequences."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sirius.lakehouse.views._thread_spans import pair_spans

Span = tuple[int, int, int, tuple[int, int, int] | None]


def _by_stack(is_begin: list[bool]) -> list[Span]:
    """Spans as (begin, end, depth, parent's (begin, end, depth)); -1 marks a synthetic event."""
    depth = missing = 0
    for begin in is_begin:
        depth += 1 if begin else -1
        missing = max(missing, -depth)
    events = [(True, -1)] * missing + [(b, i) for i, b in enumerate(is_begin)]
    stack: list[list[int]] = []  # [begin, end, depth, parent slot]
    spans: list[list[int]] = []
    for begin, index in events:
        if begin:
            spans.append([index, -1, len(stack), stack[-1][4] if stack else -1, len(spans)])
            stack.append(spans[-1])
        else:
            stack.pop()[1] = index
    result = []
    for b, e, d, parent, _ in spans:
        up = spans[parent] if parent >= 0 else None
        result.append((b, e, d, None if up is None else (up[0], up[1], up[2])))
    return sorted(result, key=repr)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=200))
def test_pairing_matches_a_stack(is_begin: list[bool]) -> None:
    begin, end, depth, parent = pair_spans(np.array(is_begin, dtype=bool))
    spans = []
    for b, e, d, p in zip(begin.tolist(), end.tolist(), depth.tolist(), parent.tolist(), strict=True):
        up = None if p < 0 else (begin.tolist()[p], end.tolist()[p], depth.tolist()[p])
        spans.append((b, e, d, up))
    assert sorted(spans, key=repr) == _by_stack(is_begin)
