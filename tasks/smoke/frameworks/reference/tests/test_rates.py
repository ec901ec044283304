import pytest
from bench_utils.rates import format_rate, tokens_per_second


def test_tokens_per_second():
    assert tokens_per_second(1000, 2.0) == 500.0
    assert tokens_per_second(0, 2.0) == 0.0  # zero tokens is not negative: the boundary of the check
    assert isinstance(tokens_per_second(3, 2), float)


@pytest.mark.parametrize("seconds", [0, -1.5])
def test_rejects_non_positive_seconds(seconds):
    with pytest.raises(ValueError, match="seconds"):
        tokens_per_second(10, seconds)


def test_rejects_negative_tokens():
    with pytest.raises(ValueError, match="tokens"):
        tokens_per_second(-1, 1.0)


def test_format_rate():
    assert format_rate(1234.5) == "1.2K tok/s"
    assert format_rate(2_500_000) == "2.5M tok/s"
    assert format_rate(12) == "12.0 tok/s"
