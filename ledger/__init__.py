"""The PostgreSQL ledger: the only source of truth. Models, migrations, repository functions."""
