import gc
import threading

import pytest

from sgwatch.bulk import gc_paused


@pytest.fixture(autouse=True)
def _collector_on() -> None:
    gc.enable()


def test_paused_inside_and_resumed_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still holds it
    assert gc.isenabled()


def test_resumed_after_an_exception() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_threads_resume_once_the_last_leaves() -> None:
    inside, leave = threading.Event(), threading.Event()

    def worker() -> None:
        with gc_paused():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=worker)
    with gc_paused():
        t.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the worker is still in its block
    leave.set()
    t.join(5)
    assert gc.isenabled()


def test_freeze_keeps_what_the_block_built_out_of_collections() -> None:
    before = gc.get_freeze_count()
    try:
        with gc_paused(freeze=True):
            built = [[n] for n in range(1000)]
        assert gc.get_freeze_count() >= before + len(built)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
