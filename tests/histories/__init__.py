"""Replay fixtures: one recorded history per workflow shape that ships, with its command-sequence
fingerprint. `make record-histories` (tests/histories/record.py) writes them; tests/test_replay.py
replays every one and compares fresh runs with the fingerprints."""
