"""Classification: every error gets a category, and each category its retry delay."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.classify import categorize, error_class_name, retry_delay
from pipeline.errors import (
    BatchlineError,
    ConfigurationError,
    CriticalError,
    CustomerSuspended,
    DataCorruption,
    DataError,
    DuplicateOrder,
    ErrorCategory,
    InvalidInput,
    PermanentError,
    PolicyViolation,
    QualityRejected,
    RateLimited,
    ResourceError,
    SecurityBreach,
    TransientError,
)

C = ErrorCategory


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (BatchlineError("root"), C.PERMANENT),
        (TransientError("db locked"), C.TRANSIENT),
        (ResourceError("disk full"), C.RESOURCE),
        (RateLimited("slow down", retry_after=5), C.RATE_LIMIT),
        (ConfigurationError("no publisher token"), C.CONFIGURATION),
        (DataError("stored article missing"), C.DATA),
        (PermanentError("no"), C.PERMANENT),
        (InvalidInput("bad url"), C.PERMANENT),
        (PolicyViolation("exact-match anchor"), C.PERMANENT),
        (CustomerSuspended("suspended"), C.PERMANENT),
        (DuplicateOrder("seen"), C.PERMANENT),
        (QualityRejected("thin"), C.PERMANENT),
        (CriticalError("halt"), C.CRITICAL),
        (DataCorruption("contradiction"), C.CRITICAL),
        (SecurityBreach("forged receipt"), C.CRITICAL),
    ],
)
def test_a_batchline_error_is_categorized_by_its_class(
    error: BaseException, category: ErrorCategory
) -> None:
    assert categorize(error) is category


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (TimeoutError("read timed out"), C.TRANSIENT),
        (ConnectionError("reset"), C.TRANSIENT),
        (ConnectionResetError(errno.ECONNRESET, "reset by peer"), C.TRANSIENT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), C.TRANSIENT),
        (BrokenPipeError(errno.EPIPE, "broken pipe"), C.TRANSIENT),
        (OSError(errno.ENOSPC, "No space left on device"), C.RESOURCE),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), C.RESOURCE),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), C.RESOURCE),
        (MemoryError(), C.RESOURCE),
        (OSError(errno.ENOENT, "No such file"), C.DATA),
        (PermissionError(errno.EACCES, "denied"), C.DATA),
        (OSError("no errno"), C.DATA),
        (KeyError("order_id"), C.DATA),
        (ValueError("bad"), C.DATA),
        (TypeError("bug"), C.DATA),
        (AttributeError("bug"), C.DATA),
        (ZeroDivisionError(), C.DATA),
    ],
)
def test_an_error_we_did_not_raise_is_categorized_by_type(
    error: BaseException, category: ErrorCategory
) -> None:
    assert categorize(error) is category


def test_the_error_class_name_is_the_type_name() -> None:
    assert error_class_name(DuplicateOrder("seen")) == "DuplicateOrder"
    assert error_class_name(KeyError("x")) == "KeyError"
    assert DuplicateOrder("seen").error_class == "DuplicateOrder"


# --- retry delays ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(0, 0.0), (1, 0.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (9, 256.0), (10, 300.0)],
)
def test_a_transient_error_retries_at_once_then_backs_off_exponentially_to_the_cap(
    attempt: int, delay: float
) -> None:
    assert retry_delay(TransientError("timeout"), attempt) == delay
    assert retry_delay(TimeoutError("timeout"), attempt) == delay


def test_a_transient_delay_honours_a_smaller_cap() -> None:
    assert retry_delay(ConnectionError("reset"), 6, cap=20.0) == 20.0


@pytest.mark.parametrize(
    ("attempt", "delay"), [(1, 10.0), (2, 20.0), (3, 30.0), (29, 290.0), (30, 300.0), (99, 300.0)]
)
def test_a_resource_error_backs_off_linearly_to_the_cap(attempt: int, delay: float) -> None:
    assert retry_delay(ResourceError("disk full"), attempt) == delay
    assert retry_delay(MemoryError(), attempt) == delay
    assert retry_delay(OSError(errno.ENOSPC, "full"), attempt) == delay


@pytest.mark.parametrize(
    ("retry_after", "attempt", "delay"),
    [(42.0, 1, 42.0), (42.0, 8, 42.0), (0.5, 1, 0.5), (0.0, 3, 0.0), (10_000.0, 1, 300.0)],
)
def test_a_rate_limit_honours_retry_after_up_to_the_cap(
    retry_after: float, attempt: int, delay: float
) -> None:
    assert retry_delay(RateLimited("429", retry_after=retry_after), attempt) == delay


def test_a_negative_retry_after_means_retry_now() -> None:
    assert retry_delay(RateLimited("429", retry_after=-3.0), 2) == 0.0


def test_retry_after_respects_a_custom_cap() -> None:
    assert retry_delay(RateLimited("429", retry_after=120.0), 1, cap=60.0) == 60.0


@pytest.mark.parametrize(
    ("attempt", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (8, 256.0), (9, 300.0)]
)
def test_a_rate_limit_without_retry_after_backs_off_exponentially(
    attempt: int, delay: float
) -> None:
    assert retry_delay(RateLimited("429"), attempt) == delay


def test_a_rate_limit_keeps_retry_after_in_its_details() -> None:
    assert RateLimited("429", retry_after=7.5).details == {"retry_after": 7.5}


RETRYABLE_ERRORS = st.sampled_from(
    [
        TransientError("t"),
        TimeoutError("t"),
        ConnectionError("c"),
        ResourceError("r"),
        MemoryError(),
        OSError(errno.ENOSPC, "full"),
        RateLimited("429"),
        RateLimited("429", retry_after=30.0),
        RateLimited("429", retry_after=1e9),
    ]
)


@settings(deadline=None, database=None)
@given(error=RETRYABLE_ERRORS, attempt=st.integers(0, 1_000), cap=st.floats(0.0, 3_600.0))
def test_a_retry_delay_is_never_negative_nor_above_the_cap(
    error: BaseException, attempt: int, cap: float
) -> None:
    assert 0.0 <= retry_delay(error, attempt, cap=cap) <= cap


@settings(deadline=None, database=None)
@given(error=RETRYABLE_ERRORS, attempt=st.integers(1, 1_000))
def test_a_later_attempt_never_waits_less(error: BaseException, attempt: int) -> None:
    assert retry_delay(error, attempt + 1) >= retry_delay(error, attempt)


@pytest.mark.parametrize("error", [TransientError("t"), RateLimited("429")])
def test_a_very_large_attempt_number_still_gives_the_cap(error: BaseException) -> None:
    assert retry_delay(error, 1_100) == 300.0
