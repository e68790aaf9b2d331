"""The activity simulator: listeners with genre tastes, sessions, skips on tracks far from their taste,
likes on close ones, Zipf popularity, produced to Kafka at a configurable rate.

    python -m simulator --rate 1000 --duration 60 --users 10000

`behaviour` is pure (a seeded generator of events over a catalogue); `produce` is the Kafka edge.
"""
