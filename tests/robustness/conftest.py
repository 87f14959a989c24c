"""Robustness suite settings."""


def pytest_configure(config):
    # Registered by pytest-xdist when it is active; declared here so runs without it stay quiet.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")
