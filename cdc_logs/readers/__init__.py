"""Native readers, one subpackage per source, with the same file names in each."""
