"""The artefacts that spark-submit ships to a cluster (`python -m deploy`)."""
