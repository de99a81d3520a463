"""Page tokens (components/shared/_paging.py): a token is checked once, in one place, for being ours,
for the query it was issued for and for the shape of its position, with one error for each problem."""

from __future__ import annotations

import pytest
from voltorch_server.components.shared import decode_token, encode_token, is_count, is_pair
from voltorch_server.errors import InvalidArgument


def test_a_token_gives_back_its_position_for_its_own_query() -> None:
    assert decode_token(encode_token({"k": "a"}, [1.5, "x"]), {"k": "a"}, shape=is_pair) == [1.5, "x"]
    assert decode_token("", {"k": "a"}, shape=is_count) is None


@pytest.mark.parametrize(
    ("token", "shape", "message"),
    [
        ("not-a-token", is_count, "malformed page token"),
        (encode_token({"k": "a"}, -1), is_count, "malformed page token"),
        (encode_token({"k": "a"}, True), is_count, "malformed page token"),
        (encode_token({"k": "a"}, [1]), is_pair, "malformed page token"),
        (encode_token({"k": "b"}, 3), is_count, "issued for a different query"),
    ],
)
def test_a_token_that_is_not_ours_or_not_for_this_query_is_refused(token, shape, message) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_token(token, {"k": "a"}, shape=shape, field="page_token")
    assert message in err.value.message and err.value.reason == "PAGE_TOKEN_INVALID"
