"""Real servers on loopback for the network edge (SMTP, SMS gateway) and their fixtures,
shared by the whole suite through `pytest_plugins` in tests/conftest.py."""
