"""The simulator's Kafka edge: confluent-kafka, batched, idempotent, paced to a target rate."""
from __future__ import annotations

import time
from dataclasses import dataclass

PRODUCER_CONF = {
    "enable.idempotence": True,       # no duplicates from retries, per-partition order kept
    "linger.ms": 5,                   # run_live raises it with the rate (live_linger_ms)
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "compression.type": "lz4",
}


PACE_S = 0.005      # run_live wakes this often and sends what is due (each record stamped as it is made)


def live_linger_ms(rate: float) -> int:
    """The producer's linger for `rate` events/s: rate / 40 ms, within 5..25 (5 up to 200/s, 25 from 1,000/s).

    The simulator shares the machine with the stream it loads. At 1,000/s a 5 ms linger sent a couple of
    records per produce request, and the broker and the producer then took 0.42 of a core between them
    (the simulator alone on the stack, a 20 s window, 1 ms pacing); a 25 ms linger and 5 ms pacing (PACE_S)
    took 0.25. A record waits up to the linger before it is sent, and its latency counts from when it was
    made, so low rates, where the stream's latency target is tight, keep 5 ms."""
    return int(min(25, max(5, rate / 40)))


def make_producer(settings, **overrides):
    from confluent_kafka import Producer

    from common.kafka import client_config

    return Producer(client_config(settings, **{**PRODUCER_CONF, **overrides}))


@dataclass
class Stats:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class _Counter:
    def __init__(self, stats: Stats):
        self.stats = stats

    def __call__(self, err, msg):
        if err is not None:
            self.stats.failed += 1


def _produce(producer, topic: str, key: str, value: str, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            return
        except BufferError:        # local queue full: let librdkafka send, then retry
            producer.poll(0.05)


def produce_records(settings, records, topic: str | None = None, timeout: float = 60.0) -> Stats:
    """Send a fixed list of (key, value) records as fast as possible and wait for every ack."""
    topic = topic or settings.topic_activity
    stats = Stats()
    producer = make_producer(settings)
    cb = _Counter(stats)
    t0 = time.monotonic()
    for i, (key, value) in enumerate(records):
        _produce(producer, topic, key, value, cb)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(timeout)
    stats.sent = len(records) - left - stats.failed
    stats.failed += left
    stats.seconds = time.monotonic() - t0
    return stats


def run_live(sim, settings, rate: float, *, duration: float | None = None, max_events: int | None = None,
             topic: str | None = None, progress: bool = True, clock=time.time, forever: bool = False) -> Stats:
    """Produce `rate` events/s (event_time = the time of produce) for `duration` s, `max_events`, or
    with `forever` until interrupted."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if duration is None and max_events is None and not forever:
        raise ValueError("give a duration, a number of events or forever=True")
    topic = topic or settings.topic_activity
    stats = Stats()
    producer = make_producer(settings, **{"linger.ms": live_linger_ms(rate)})
    cb = _Counter(stats)
    total = max_events if max_events is not None else (None if forever else int(rate * duration))
    bar = None
    if progress:
        from common.progress import bar as progress_bar

        bar = progress_bar(total=total, unit="ev", desc=f"simulator {rate:g}/s", mininterval=1.0)
    t0 = time.monotonic()
    sent = 0
    try:
        while total is None or sent < total:
            elapsed = time.monotonic() - t0
            if duration is not None and elapsed >= duration:
                break
            due = int(rate * elapsed) + 1 - sent
            if total is not None:
                due = min(total - sent, due)
            if due <= 0:
                producer.poll(0)
                time.sleep(PACE_S)
                continue
            for _ in range(min(due, 2000)):
                key, value = sim.next(int(clock() * 1000))
                _produce(producer, topic, key, value, cb)
                sent += 1
            producer.poll(0)
            if bar is not None:
                bar.update(sent - bar.n)
    finally:
        left = producer.flush(30)
        stats.seconds = time.monotonic() - t0
        stats.sent = sent - left - stats.failed
        stats.failed += left
        if bar is not None:
            bar.close()
    return stats
