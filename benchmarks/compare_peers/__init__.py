"""autocompress side by side with other compression toolkits; run `python -m benchmarks.compare_peers`."""
