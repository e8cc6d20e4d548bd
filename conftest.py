"""The fixtures every app's tests share live in the development kit's pytest plugin."""

pytest_plugins = ["devkit.pytest_plugin"]
