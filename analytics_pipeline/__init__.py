"""tweetflow's Dagster code location (see definitions.py): the only package importing Dagster."""
