#!/usr/bin/env bash
# Runs once in the primary container at initdb: lets the replica connect for streaming replication.
set -euo pipefail
echo "host replication umw all scram-sha-256" >> "$PGDATA/pg_hba.conf"
