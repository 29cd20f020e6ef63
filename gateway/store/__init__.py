"""The gateway's database: SQLAlchemy Core schema, Alembic migrations, the device registry."""
