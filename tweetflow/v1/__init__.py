"""Generated gRPC code of the tweetflow.v1 API (see proto/)."""
