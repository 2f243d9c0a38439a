"""The application layer: the `tweetflow` command line, the local stack, the demo and the Dagster
UI launcher. It may import every other layer; nothing outside it imports it (the core under
`tweetflow/` least of all), see tests/test_layers.py.
"""
