pytest_plugins = ["tests.support.store_fixtures", "tests.support.agent_app"]
