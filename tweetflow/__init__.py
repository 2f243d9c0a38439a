"""tweetflow."""
