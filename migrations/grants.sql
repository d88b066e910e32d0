-- Least-privilege grants to the per-service roles (runtime/pg-roles.ts). Not a versioned migration:
-- `umw migrate` runs this after the migrations every time, as the owner, on the database it migrates
-- (so every per-run test database gets them too). Roles that do not exist are skipped: without them
-- (embedded PGlite, a deployment with one user) this does nothing. scripts/infra.sh creates the roles.
DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'umw_query') THEN
    REVOKE ALL ON umw_entities, umw_entity_tombstones, umw_commands, umw_idempotency_keys, umw_outbox, umw_inbox, umw_schema_migrations FROM umw_query;
    GRANT SELECT ON umw_entities, umw_entity_tombstones TO umw_query;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'umw_command') THEN
    REVOKE ALL ON umw_entities, umw_entity_tombstones, umw_commands, umw_idempotency_keys, umw_outbox, umw_inbox, umw_schema_migrations FROM umw_command;
    GRANT SELECT, INSERT, UPDATE, DELETE ON umw_idempotency_keys TO umw_command;
    GRANT SELECT, INSERT ON umw_commands TO umw_command;
    GRANT INSERT ON umw_outbox TO umw_command;
    GRANT USAGE ON SEQUENCE umw_outbox_seq_seq TO umw_command;
    GRANT SELECT ON umw_entities TO umw_command;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'umw_processor') THEN
    REVOKE ALL ON umw_entities, umw_entity_tombstones, umw_commands, umw_idempotency_keys, umw_outbox, umw_inbox, umw_schema_migrations FROM umw_processor;
    GRANT SELECT, INSERT, UPDATE, DELETE ON umw_entities, umw_entity_tombstones TO umw_processor;
    GRANT SELECT, INSERT ON umw_inbox TO umw_processor;
    GRANT INSERT ON umw_outbox TO umw_processor;
    GRANT USAGE ON SEQUENCE umw_outbox_seq_seq TO umw_processor;
    GRANT SELECT, UPDATE ON umw_commands TO umw_processor;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'umw_relay') THEN
    REVOKE ALL ON umw_entities, umw_entity_tombstones, umw_commands, umw_idempotency_keys, umw_outbox, umw_inbox, umw_schema_migrations FROM umw_relay;
    GRANT SELECT, UPDATE, DELETE ON umw_outbox TO umw_relay;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'umw_realtime') THEN
    REVOKE ALL ON umw_entities, umw_entity_tombstones, umw_commands, umw_idempotency_keys, umw_outbox, umw_inbox, umw_schema_migrations FROM umw_realtime;
    GRANT SELECT ON umw_entities, umw_entity_tombstones, umw_commands TO umw_realtime;
  END IF;
END
$grants$;
