"""MetaManager: edgecore's durable metadata store and the message logic between the cloud link and edged.

``store`` owns edgecore.db (synchronous, SQLAlchemy Core on SQLite); ``resources`` parses wire
resources; ``manager`` is the trio component that applies cloud messages durably before acking
them, answers edged's queries (remote while connected, from the database otherwise) and keeps
the offline outbox.
"""
