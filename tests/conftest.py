pytest_plugins = ["tests.registry_fixtures"]
