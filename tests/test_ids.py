"""Message ids: unique, increasing even when the clock stalls or steps back, and JS-safe."""

from gru.backends.memory import MemoryBackend
from gru.services.ids import MAX_SAFE_INTEGER, IdAllocator


def test_ids_increase_within_one_millisecond_and_when_the_clock_goes_back():
    now = [1_800_000_000.0]
    ids = IdAllocator(MemoryBackend(), clock=lambda: now[0])
    first = [ids.next_id()[0] for _ in range(5000)]  # more than 1000 in one millisecond
    now[0] -= 10  # clock steps back ten seconds
    second = [ids.next_id()[0] for _ in range(10)]
    sequence = first + second
    assert sequence == sorted(sequence)
    assert len(set(sequence)) == len(sequence)


def test_ids_follow_the_clock_and_stay_javascript_safe_for_centuries():
    now = [1_800_000_000.0]
    ids = IdAllocator(MemoryBackend(), clock=lambda: now[0])
    message_id, created = ids.next_id()
    assert created == 1_800_000_000_000
    assert message_id == created * 1000
    far = IdAllocator(MemoryBackend(), clock=lambda: 9_000_000_000.0)  # year 2255
    assert far.next_id()[0] <= MAX_SAFE_INTEGER


def test_ids_do_not_go_back_after_the_counter_is_lost():
    now = [1_800_000_000.0]
    before = IdAllocator(MemoryBackend(), clock=lambda: now[0]).next_id()[0]
    now[0] += 0.001
    after = IdAllocator(MemoryBackend(), clock=lambda: now[0]).next_id()[0]  # fresh state, like a restart
    assert after > before
