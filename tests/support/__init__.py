"""What the tests share. Modules that define fixtures are pytest plugins, registered once in
tests/conftest.py (`pytest_plugins`); test modules import only helpers (functions, classes,
constants) from here, from tests/fakes/ and from the application, never from another test module
or a conftest.py."""
