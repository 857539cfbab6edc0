"""SlowFast features of SimpleVQA: extraction into the cache (slowfast), those of files scored by path (scored_files)."""
