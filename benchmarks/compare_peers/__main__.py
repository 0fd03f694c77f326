"""`python -m benchmarks.compare_peers`: see driver.py."""

from benchmarks.compare_peers.driver import main

main()
