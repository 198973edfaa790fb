"""Shared pytest configuration: each stand-in's fixtures live in tests/fixtures/<name>.py."""

pytest_plugins: list[str] = [
    "tests.fixtures.convex",
    "tests.fixtures.s3",
    "tests.fixtures.xata",
    "tests.fixtures.postgres",
    "tests.fixtures.trigger",
    "tests.fixtures.build",
]
