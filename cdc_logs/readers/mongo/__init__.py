"""MongoDB source: change streams (collections, a database or the deployment) through PyMongo.

See reader.py (MongoReader), connection.py (client, identity, change streams, error mapping),
changes.py (change documents -> events in order, transactions grouped), convert.py (envelopes in
Debezium's MongoDB shape or plain JSON), snapshot.py (initial snapshot), doctor.py (preflight checks)
and docs/sources/mongo.md.
"""
