"""Benchmarks of cas-repo against the seed's design, Qlib's Recorder and the machine's limits.

Run ``python -m tools.bench`` (``make bench``); see README.md in this folder for the
scenario interface.
"""
