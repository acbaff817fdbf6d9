"""Test fakes for external services."""
