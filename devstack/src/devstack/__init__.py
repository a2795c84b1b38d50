"""Running the whole platform on one machine: embedded Postgres/Redis, stand-ins, every service."""
