"""miniwait: waiting for miniqueue's messages. A thread blocked in get(timeout), a task
awaiting aget(), and the retry delays of nack(), which live in RAM only (FORMAT.md 5.2).
"""
# No background thread or task: a put or nack wakes the waiters itself (Wakeup.notify),
# and a waiter that expects a delayed message to come due sleeps only until then.
import minishim as shim

# miniqueue imports this module at the first wait or delay, and checks every number of
# seconds before it gets here (miniqueue._check_seconds).


def backoff(delay, factor, cap, deliveries):
    """delay * factor ** (deliveries - 1), at most `cap`: the retry delay of a message
    nacked after its deliveries-th delivery."""
    for _ in range(deliveries - 1):
        if delay >= cap or delay == 0 or factor == 1:
            break
        delay *= factor
    return min(delay, cap)


def ticks_after(seconds):
    """The ticks_ms() value `seconds` from now."""
    return shim.ticks_add(shim.ticks_ms(), int(seconds * 1000 + 0.5))


def _passed(deadline):
    return shim.ticks_diff(deadline, shim.ticks_ms()) <= 0


class Delays:
    """Ids of nacked messages that are not to be delivered before their time."""

    def __init__(self):
        self._due = []  # [[ticks_ms when due, id]], in no order: a handful at a time

    def __len__(self):
        return len(self._due)

    def add(self, mid, seconds):
        self._due.append([ticks_after(seconds), mid])

    def pop_due(self):
        """The ids whose time has come (removed from here)."""
        if not self._due:
            return ()
        now = shim.ticks_ms()
        due = []
        for item in self._due:
            left = shim.ticks_diff(item[0], now)
            # More than MAX_DELAY ahead cannot be: the ticks wrapped round a time long past.
            if left <= 0 or left > shim.MAX_DELAY * 1000:
                due.append(item)
        for item in due:
            self._due.remove(item)
        return [item[1] for item in due]

    def next_ms(self):
        """Milliseconds until the next one comes due, or None if there is none."""
        if not self._due:
            return None
        now = shim.ticks_ms()
        return max(0, min(shim.ticks_diff(item[0], now) for item in self._due))

    def clear(self):
        self._due = []


class Wakeup:
    """Wakes what waits for a message: threads in get(timeout), tasks in aget().
    Called under the queue's lock."""

    def __init__(self):
        self._locks = []  # one held lock per waiting thread; notify() releases them
        # (asyncio, loop or None, asyncio.Event) per event loop whose tasks wait in aget():
        # a CPython Event belongs to one loop, and two loops (two threads) may wait at once.
        self._aio = []

    def register(self):
        lock = shim.held_lock()
        self._locks.append(lock)
        return lock

    def unregister(self, lock):
        if lock in self._locks:
            self._locks.remove(lock)

    def waiting(self):
        """True if a thread or task may be waiting. Read under the queue's lock: a waiter
        looks for a message and registers in one hold of it (MiniQueue._put_bodies)."""
        return bool(self._locks) or bool(self._aio)

    def notify(self):
        locks, self._locks = self._locks, []
        for lock in locks:
            lock.release()
        for asyncio, loop, event in self._aio:
            if loop is None:
                event.set()  # MicroPython: one loop, and aget() is for tasks of it
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)  # a put from another thread (CPython)

    def event(self, asyncio):
        """The asyncio.Event that notify() sets, for the running loop."""
        loop = asyncio.get_running_loop() if hasattr(asyncio, "get_running_loop") else None
        kept = []
        found = None
        for aio in self._aio:
            if aio[1] is loop:
                found = aio
            if aio[1] is None or not aio[1].is_closed():
                kept.append(aio)  # a closed loop's Event waits for nothing any more
        if found is None:
            found = (asyncio, loop, asyncio.Event())
            kept.append(found)
        self._aio = kept
        return found[2]


def _wait_ms(queue, deadline):
    """Milliseconds to wait: until `deadline` (ticks) or the next delayed message, at least 0."""
    due = queue._delays.next_ms() if queue._delays is not None else None
    left = None if deadline is None else max(0, shim.ticks_diff(deadline, shim.ticks_ms()))
    if due is None:
        return left
    return due if left is None else min(due, left)


def blocking_get(queue, timeout):
    """MiniQueue.get(timeout): deliver, or wait for a put or nack (or a delay to pass)."""
    deadline = ticks_after(timeout)
    while True:
        with queue._lock:
            item = queue._get_now()
            if item is not None:
                return item
            wait = _wait_ms(queue, deadline)
            if wait == 0 and _passed(deadline):
                return None
            if queue._wake is None:  # the queue's Wakeup, made at its first wait
                queue._wake = Wakeup()
            lock = queue._wake.register()
        try:
            shim.wait_release(lock, wait)
        finally:
            with queue._lock:
                queue._wake.unregister(lock)


async def aget(queue, timeout=None):
    """MiniQueue.aget(): get() for asyncio tasks, waiting without blocking the loop."""
    import asyncio  # here, not at the top: the core imports on a port without asyncio
    deadline = None
    if timeout is not None:
        deadline = ticks_after(timeout)
    while True:
        with queue._lock:
            if queue._wake is None:
                queue._wake = Wakeup()
            event = queue._wake.event(asyncio)
            event.clear()  # before looking: a put from now on sets it again
            item = queue._get_now()
            if item is not None:
                return item
            wait = _wait_ms(queue, deadline)
        if deadline is not None and wait == 0 and _passed(deadline):
            return None
        if wait is None:
            await event.wait()
            continue
        try:
            await asyncio.wait_for(event.wait(), wait / 1000)
        except asyncio.TimeoutError:
            pass
