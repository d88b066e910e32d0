-- Commands of an entity not applied yet: a conditional write is refused at accept (412) only when
-- none is pending, since a pending one may still bring the entity to the version it expects.
CREATE INDEX umw_commands_pending ON umw_commands (tenant, type, entity_id) WHERE state = 'accepted';
