-- The primary store of every resource type that does not map to a table of its own.
CREATE TABLE umw_entities (
  tenant      text        NOT NULL,
  type        text        NOT NULL,
  id          text        NOT NULL,
  version     bigint      NOT NULL,
  data        jsonb       NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, type, id)
);

-- Every accepted write and what became of it.
CREATE TABLE umw_commands (
  id          uuid        PRIMARY KEY,
  tenant      text        NOT NULL,
  principal   text        NOT NULL,
  type        text        NOT NULL,
  entity_id   text        NOT NULL,
  action      text        NOT NULL,
  state       text        NOT NULL CHECK (state IN ('accepted', 'applied', 'rejected', 'failed')),
  version     bigint,
  error       jsonb,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now()
);

-- Idempotency keys (draft-ietf-httpapi-idempotency-key-header), scoped by tenant and principal.
CREATE TABLE umw_idempotency_keys (
  tenant      text        NOT NULL,
  principal   text        NOT NULL,
  key         text        NOT NULL,
  fingerprint text        NOT NULL,
  command_id  uuid        NOT NULL,
  response    bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant, principal, key)
);
CREATE INDEX umw_idempotency_keys_expiry ON umw_idempotency_keys (expires_at);

-- Transactional outbox in Debezium's outbox layout (id, aggregatetype, aggregateid, type, payload),
-- plus the Kafka topic, CloudEvents/trace headers, and a sequence that fixes publication order.
CREATE TABLE umw_outbox (
  seq           bigserial   PRIMARY KEY,
  id            uuid        NOT NULL UNIQUE,
  aggregatetype text        NOT NULL,
  aggregateid   text        NOT NULL,
  type          text        NOT NULL,
  topic         text        NOT NULL,
  payload       bytea       NOT NULL,
  headers       jsonb       NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  published_at  timestamptz
);
CREATE INDEX umw_outbox_unpublished ON umw_outbox (seq) WHERE published_at IS NULL;

-- Messages a consumer has applied: inserted in the same transaction as the effect.
CREATE TABLE umw_inbox (
  consumer     text        NOT NULL,
  message_id   text        NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
