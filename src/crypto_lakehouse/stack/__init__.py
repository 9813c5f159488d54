"""Starting and stopping the real local services: SeaweedFS, PostgreSQL, Prefect server."""
