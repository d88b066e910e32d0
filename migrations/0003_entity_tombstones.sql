-- The version at which an entity was deleted, so that recreating it continues above that version:
-- caches and streams fence on versions, and a recreate at version 1 would sit below the deletion.
CREATE TABLE umw_entity_tombstones (
  tenant     text        NOT NULL,
  type       text        NOT NULL,
  id         text        NOT NULL,
  version    bigint      NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, type, id)
);
