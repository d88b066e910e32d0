# umw's authorization policy, compiled to WebAssembly (policy/authz.wasm, scripts/policy.sh build)
# and evaluated in-process by services/policy for every mesh call, every subscription and every
# Envoy ext_authz check. docs/security.md, "Authorization (OPA)", explains the rules.
#
# Input:
#   method     "umw.v1.QueryService/GetEntity" (gRPC full method name, without the leading slash)
#   tenants    the tenants the request targets (its `tenant` field; for a subscription also each topic's)
#   principal  {kind: "user"|"service", subject, tenant, scopes: [...], roles: [...]}; absent when
#              the call carries none
#   topics     for umw.v1.RealtimeService/Subscribe: [{kind: "entity"|"type"|"ownCommands", tenant, principal}]
#
# Output (entrypoint umw/authz/decision): {"allow": true} or {"allow": false, "reason": REASON},
# REASON one of the ErrorInfo reasons in runtime/reasons.ts.
package umw.authz

# The scope each operation needs from a user principal.
operation_scopes := {
	"umw.v1.QueryService/GetEntity": "entities:read",
	"umw.v1.QueryService/BatchGetEntities": "entities:read",
	"umw.v1.QueryService/ListEntities": "entities:read",
	"umw.v1.CommandService/CreateEntity": "entities:write",
	"umw.v1.CommandService/UpdateEntity": "entities:write",
	"umw.v1.CommandService/PatchEntity": "entities:write",
	"umw.v1.CommandService/DeleteEntity": "entities:write",
	"umw.v1.CommandService/GetCommand": "commands:read",
	"umw.v1.CommandService/WatchCommand": "commands:read",
	"umw.v1.RealtimeService/Subscribe": "realtime:subscribe",
}

# The scope each kind of subscription topic needs, on top of realtime:subscribe.
topic_scopes := {
	"entity": "entities:read",
	"type": "entities:read",
	"ownCommands": "commands:read",
}

# Anyone may ask these, with or without a principal.
public_methods := {
	"grpc.health.v1.Health/Check",
	"grpc.health.v1.Health/Watch",
}

# The role that may do everything within its own tenant, whatever its scopes.
admin_role := "admin"

default decision := {"allow": false, "reason": "PERMISSION_DENIED"}

decision := {"allow": true} if allow

decision := {"allow": false, "reason": deny_reason} if not allow

allow if input.method in public_methods

# A service principal is a mesh identity calling on its own behalf (the mTLS peer); which methods
# each identity may call is the mesh authorization table's business, not this policy's.
allow if input.principal.kind == "service"

allow if {
	input.principal.kind == "user"
	operation_scopes[input.method]
	count(denials) == 0
}

is_admin if admin_role in input.principal.roles

has_scope(scope) if scope in input.principal.scopes

has_scope(_) if is_admin

# Every reason a user principal is refused; the first by priority becomes the decision's reason.
denials contains "TENANT_REQUIRED" if not input.principal.tenant

denials contains "CROSS_TENANT_ACCESS" if {
	some tenant in input.tenants
	tenant != input.principal.tenant
}

denials contains "CROSS_TENANT_ACCESS" if {
	some topic in input.topics
	topic.tenant != input.principal.tenant
}

denials contains "MISSING_SCOPE" if not has_scope(operation_scopes[input.method])

denials contains "MISSING_SCOPE" if {
	some topic in input.topics
	not has_scope(topic_scopes[topic.kind])
}

denials contains "FOREIGN_COMMANDS" if {
	some topic in input.topics
	topic.kind == "ownCommands"
	topic.principal != input.principal.subject
}

reason_priority := ["PRINCIPAL_REQUIRED", "OPERATION_NOT_ALLOWED", "TENANT_REQUIRED", "CROSS_TENANT_ACCESS", "FOREIGN_COMMANDS", "MISSING_SCOPE"]

all_denials contains "PRINCIPAL_REQUIRED" if not input.principal.kind

# A user may call only the operations above (not reflection, nor the control plane).
all_denials contains "OPERATION_NOT_ALLOWED" if {
	input.principal.kind == "user"
	not operation_scopes[input.method]
}

all_denials contains reason if some reason in denials

deny_reason := [reason | some reason in reason_priority; reason in all_denials][0]
