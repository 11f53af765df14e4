"""Benchmarks: retrieval quality (semble subset) and encoder speed."""
