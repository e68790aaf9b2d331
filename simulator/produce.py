"""The simulator's Kafka edge: confluent-kafka, batched, idempotent, paced to a target rate."""
from __future__ import annotations

import time
from dataclasses import dataclass

PRODUCER_CONF = {
    "enable.idempotence": True,       # no duplicates from retries, per-partition order kept
    "linger.ms": 5,                   # batch a few ms of records: 5,000/s are ~25 records per batch
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "compression.type": "lz4",
}


def make_producer(settings, **overrides):
    from confluent_kafka import Producer

    from common.kafka import client_config

    return Producer(client_config(settings, **PRODUCER_CONF, **overrides))


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
    producer = make_producer(settings)
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
                time.sleep(min(0.002, 1.0 / rate))
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
