"""Fixtures shared by every test tree; each lives in a plugin module named after what it provides."""

pytest_plugins = ["tests.kafka_fixture", "tests.sim_fixture", "tests.worker_fixture"]
