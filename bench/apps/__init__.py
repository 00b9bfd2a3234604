"""kstatefun applications the benchmark runs (embedded functions)."""
