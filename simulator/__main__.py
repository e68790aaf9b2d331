"""python -m simulator: realistic listening activity into Kafka, for the demo and for load tests."""
from __future__ import annotations

import argparse
import sys


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Produce simulated listening activity (JSON, key = user id) to the activity topic.",
        usage="python -m simulator [--rate EV/S] [--duration S | --events N] [--users N] [options]")
    p.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    p.add_argument("--duration", type=float, help="seconds to run; 0: until interrupted (default 60 unless --events)")
    p.add_argument("--events", type=int, help="stop after this many events")
    p.add_argument("--users", type=int, default=1000, help="simulated listeners (default 1000)")
    p.add_argument("--sessions", type=int, help="concurrent sessions (default min(users, 1000))")
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of broken records, 0..1 (default 0)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--topic", help="topic (default: settings.topic_activity)")
    p.add_argument("--model-version", help="catalogue of this model (default: the current one)")
    p.add_argument("--dry-run", action="store_true", help="print 10 records instead of producing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.rate <= 0:
        p.error("--rate must be positive")
    if a.users < 1 or (a.sessions is not None and a.sessions < 1):
        p.error("--users and --sessions must be positive")
    if not 0.0 <= a.bad_rate <= 1.0:
        p.error("--bad-rate must be within 0..1")
    if a.events is not None and a.events < 1:
        p.error("--events must be positive")
    if a.duration is not None and a.duration < 0:
        p.error("--duration must be >= 0 (0: until interrupted)")
    if a.duration is None and a.events is None:
        a.duration = 60.0
    return a


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import time

    from conf import get_settings
    from simulator.behaviour import Simulator, load_catalogue

    settings = get_settings()
    try:
        cat = load_catalogue(settings, args.model_version)
        sim = Simulator(cat, args.users, seed=args.seed, concurrent=args.sessions, bad_rate=args.bad_rate,
                        run_id=f"sim{args.seed}-{int(time.time())}")
    except (LookupError, FileNotFoundError, ValueError) as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the store is down
        print(f"simulator: error: cannot read the catalogue from {settings.mongo_uri}: {type(exc).__name__}: "
              f"{str(exc)[:200]} (run `make up`)", file=sys.stderr)
        return 1
    if args.dry_run:
        for _ in range(10):
            key, value = sim.next(int(time.time() * 1000))
            print(key, value)
        return 0
    from confluent_kafka.admin import AdminClient

    try:
        from common.kafka import client_config

        AdminClient(client_config(settings)).list_topics(timeout=5)
    except Exception as exc:
        print(f"simulator: error: Kafka not reachable at {settings.kafka_bootstrap} ({exc}); run `make up`",
              file=sys.stderr)
        return 1
    from simulator.produce import run_live

    topic = args.topic or settings.topic_activity
    forever = args.duration == 0 and args.events is None
    try:
        stats = run_live(sim, settings, args.rate, duration=None if forever else args.duration,
                         max_events=args.events, topic=topic, progress=not args.quiet, forever=forever)
    except KeyboardInterrupt:
        return 0
    print(f"simulator: {stats.sent} events to {topic} in {stats.seconds:.1f} s ({stats.rate:.0f}/s), "
          f"{stats.failed} failed, {args.users} users, {sim.sessions_started} sessions")
    return 0 if stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
