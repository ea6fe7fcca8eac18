pytest_plugins = ["tests.support.store_fixtures"]
