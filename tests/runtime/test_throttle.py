"""The one login throttle of the hub and the registry."""

from __future__ import annotations

import threading

from registry.auth import login_throttle
from runtime.throttle import LoginThrottle


def test_five_wrong_passwords_lock_the_pair_and_the_lock_doubles() -> None:
    throttle = LoginThrottle()
    for _ in range(4):
        throttle.failed("Dewi", "198.51.100.1", now=0.0)
    assert throttle.retry_after("dewi", "198.51.100.1", now=0.0) == 0
    throttle.failed("dewi", "198.51.100.1", now=0.0)
    assert throttle.retry_after("DEWI", "198.51.100.1", now=1.0) == 29.0
    assert throttle.retry_after("dewi", "198.51.100.2", now=1.0) == 0  # elsewhere: free
    throttle.failed("dewi", "198.51.100.1", now=30.0)
    assert throttle.retry_after("dewi", "198.51.100.1", now=30.0) == 60.0


def test_a_name_locked_from_everywhere_spares_the_owner_desk() -> None:
    throttle = LoginThrottle(free_per_user=3)
    throttle.succeeded("dewi", "192.0.2.7")
    for n in range(3):
        throttle.failed("dewi", f"203.0.113.{n}", now=0.0)
    assert throttle.retry_after("dewi", "203.0.113.99", now=1.0) > 0
    assert throttle.retry_after("dewi", "192.0.2.7", now=1.0) == 0


def test_one_address_guessing_across_names_is_locked() -> None:
    throttle = LoginThrottle(free_per_address=30)
    for n in range(30):
        throttle.failed(f"name-{n}", "198.51.100.1", now=0.0)
    assert throttle.retry_after("someone-else", "198.51.100.1", now=1.0) > 0


def test_failures_are_forgotten_after_a_while() -> None:
    throttle = LoginThrottle(forget_s=100.0)
    for _ in range(4):
        throttle.failed("dewi", "198.51.100.1", now=0.0)
    throttle.failed("dewi", "198.51.100.1", now=200.0)
    assert throttle.retry_after("dewi", "198.51.100.1", now=200.0) == 0


def test_without_an_address_only_the_name_counts() -> None:
    throttle = LoginThrottle(free_per_user=2)
    throttle.failed("dewi", None, now=0.0)
    throttle.succeeded("dewi", None)
    throttle.failed("dewi", None, now=0.0)
    assert throttle.retry_after("dewi", None, now=0.0) == 0
    throttle.failed("dewi", None, now=0.0)
    assert throttle.retry_after("dewi", None, now=0.0) > 0


def test_the_registry_locks_a_name_after_five_from_anywhere_for_five_minutes() -> None:
    throttle = login_throttle()
    for n in range(5):
        throttle.failed("dewi", f"203.0.113.{n}", now=0.0)
    assert throttle.retry_after("dewi", "203.0.113.200", now=0.0) == 300.0
    assert throttle.retry_after("dewi", "203.0.113.200", now=301.0) == 0


def test_counts_stay_exact_under_threads() -> None:
    throttle = LoginThrottle(free=400, free_per_address=10**6, free_per_user=10**6)

    def fail() -> None:
        for _ in range(100):
            throttle.failed("dewi", "198.51.100.1", now=0.0)

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 failures exactly: the pair is locked at its 400th, not before or lost.
    assert throttle.retry_after("dewi", "198.51.100.1", now=0.0) == 30.0
