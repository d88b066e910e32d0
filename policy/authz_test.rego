package umw.authz_test

import data.umw.authz

alice := {"kind": "user", "subject": "alice", "tenant": "acme", "scopes": ["entities:read", "commands:read", "realtime:subscribe"], "roles": []}

writer := {"kind": "user", "subject": "wanda", "tenant": "acme", "scopes": ["entities:write"], "roles": []}

acme_admin := {"kind": "user", "subject": "root", "tenant": "acme", "scopes": [], "roles": ["admin"]}

query_service := {"kind": "service", "subject": "edge", "scopes": [], "roles": []}

get_entity := "umw.v1.QueryService/GetEntity"

subscribe := "umw.v1.RealtimeService/Subscribe"

test_read_in_own_tenant_with_scope if {
	authz.decision == {"allow": true} with input as {"method": get_entity, "tenants": ["acme"], "principal": alice}
}

test_read_in_another_tenant_is_cross_tenant if {
	authz.decision == {"allow": false, "reason": "CROSS_TENANT_ACCESS"} with input as {"method": get_entity, "tenants": ["globex"], "principal": alice}
}

test_any_foreign_tenant_in_the_list_denies if {
	authz.decision.reason == "CROSS_TENANT_ACCESS" with input as {"method": get_entity, "tenants": ["acme", "globex"], "principal": alice}
}

test_write_without_write_scope_is_missing_scope if {
	authz.decision == {"allow": false, "reason": "MISSING_SCOPE"} with input as {"method": "umw.v1.CommandService/CreateEntity", "tenants": ["acme"], "principal": alice}
}

test_every_write_needs_entities_write if {
	every method in ["CreateEntity", "UpdateEntity", "PatchEntity", "DeleteEntity"] {
		authz.decision.allow with input as {"method": concat("/", ["umw.v1.CommandService", method]), "tenants": ["acme"], "principal": writer}
		not authz.decision.allow with input as {"method": concat("/", ["umw.v1.CommandService", method]), "tenants": ["acme"], "principal": alice}
	}
}

test_writer_cannot_read if {
	authz.decision.reason == "MISSING_SCOPE" with input as {"method": "umw.v1.QueryService/ListEntities", "tenants": ["acme"], "principal": writer}
	authz.decision.reason == "MISSING_SCOPE" with input as {"method": "umw.v1.CommandService/GetCommand", "tenants": ["acme"], "principal": writer}
}

test_cross_tenant_outranks_missing_scope if {
	authz.decision.reason == "CROSS_TENANT_ACCESS" with input as {"method": "umw.v1.CommandService/DeleteEntity", "tenants": ["globex"], "principal": alice}
}

test_user_without_tenant_is_refused if {
	authz.decision == {"allow": false, "reason": "TENANT_REQUIRED"} with input as {"method": get_entity, "tenants": ["acme"], "principal": object.remove(alice, ["tenant"])}
}

test_no_principal_is_unauthenticated if {
	authz.decision == {"allow": false, "reason": "PRINCIPAL_REQUIRED"} with input as {"method": get_entity, "tenants": ["acme"]}
}

test_health_needs_no_principal if {
	authz.decision.allow with input as {"method": "grpc.health.v1.Health/Check", "tenants": []}
}

test_user_may_not_call_reflection if {
	authz.decision == {"allow": false, "reason": "OPERATION_NOT_ALLOWED"} with input as {"method": "grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "tenants": [], "principal": alice}
}

test_service_principal_is_left_to_the_mesh_table if {
	authz.decision.allow with input as {"method": "umw.v1.CommandService/CreateEntity", "tenants": ["globex"], "principal": query_service}
}

test_admin_needs_no_scopes_in_its_tenant if {
	authz.decision.allow with input as {"method": "umw.v1.CommandService/DeleteEntity", "tenants": ["acme"], "principal": acme_admin}
	authz.decision.allow with input as {"method": subscribe, "tenants": ["acme"], "principal": acme_admin, "topics": [{"kind": "type", "tenant": "acme"}]}
}

test_admin_stays_in_its_tenant if {
	authz.decision.reason == "CROSS_TENANT_ACCESS" with input as {"method": get_entity, "tenants": ["globex"], "principal": acme_admin}
}

test_subscribe_to_own_tenant_type if {
	authz.decision.allow with input as {"method": subscribe, "tenants": ["acme"], "principal": alice, "topics": [{"kind": "type", "tenant": "acme"}, {"kind": "entity", "tenant": "acme"}]}
}

test_subscribe_to_foreign_topic_is_cross_tenant if {
	authz.decision.reason == "CROSS_TENANT_ACCESS" with input as {"method": subscribe, "tenants": ["acme"], "principal": alice, "topics": [{"kind": "entity", "tenant": "globex"}]}
}

test_subscribe_needs_realtime_scope if {
	reader := object.union(alice, {"scopes": ["entities:read"]})
	authz.decision.reason == "MISSING_SCOPE" with input as {"method": subscribe, "tenants": ["acme"], "principal": reader, "topics": [{"kind": "type", "tenant": "acme"}]}
}

test_entity_topic_needs_read_scope if {
	listener := object.union(alice, {"scopes": ["realtime:subscribe", "commands:read"]})
	authz.decision.reason == "MISSING_SCOPE" with input as {"method": subscribe, "tenants": ["acme"], "principal": listener, "topics": [{"kind": "entity", "tenant": "acme"}]}
	authz.decision.allow with input as {"method": subscribe, "tenants": ["acme"], "principal": listener, "topics": [{"kind": "ownCommands", "tenant": "acme", "principal": "alice"}]}
}

test_own_commands_only if {
	authz.decision.allow with input as {"method": subscribe, "tenants": ["acme"], "principal": alice, "topics": [{"kind": "ownCommands", "tenant": "acme", "principal": "alice"}]}
	authz.decision == {"allow": false, "reason": "FOREIGN_COMMANDS"} with input as {"method": subscribe, "tenants": ["acme"], "principal": alice, "topics": [{"kind": "ownCommands", "tenant": "acme", "principal": "bob"}]}
}

test_unknown_principal_kind_is_refused if {
	not authz.decision.allow with input as {"method": get_entity, "tenants": ["acme"], "principal": object.union(alice, {"kind": "robot"})}
}
