"""debezium package."""
