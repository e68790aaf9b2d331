"""Thin edges shared by the jobs: the Spark session and the MongoDB store."""
